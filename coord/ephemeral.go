package coord

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// KeepEphemeral creates the ephemeral node path holding data and keeps it
// there until ctx ends: whenever the node disappears (its session expired, it
// was deleted) it is created again, retrying with backoff while the service is
// unreachable. A node that already exists with exactly data counts as ours
// (it survived a reconnect, or an earlier call made it). KeepEphemeral returns
// after the first create; its error, if any, is that create's (ErrNodeExists
// when the node holds other data). The keeping runs in a goroutine owned by
// ctx (it also stops when conn is closed); when ctx ends it deletes the node
// if it still holds data (best effort).
// log receives one line per loss and re-creation; nil means slog.Default().
func KeepEphemeral(ctx context.Context, conn Conn, path string, data []byte, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	data = bytes.Clone(data)
	if err := ensureEphemeral(ctx, conn, path, data); err != nil {
		return fmt.Errorf("keep ephemeral %s: %w", path, err)
	}
	go keepEphemeral(ctx, conn, path, data, log)
	return nil
}

func keepEphemeral(ctx context.Context, conn Conn, path string, data []byte, log *slog.Logger) {
	defer removeIfOurs(ctx, conn, path, data, log)
	var b backoff
	for {
		_, events, err := conn.Watch(ctx, path)
		if err == nil {
			b.reset()
			var last WatchData
			for ev := range events {
				last = ev
			}
			if ctx.Err() != nil || errors.Is(last.Err, ErrClosed) {
				return
			}
			log.Info("ephemeral node lost, re-creating", "path", path, "cause", last.Err)
		} else if errors.Is(err, ErrClosed) || (!errors.Is(err, ErrNoNode) && !b.wait(ctx)) {
			return
		}
		if !recreate(ctx, conn, path, data, log) {
			return
		}
	}
}

// recreate retries ensureEphemeral until it succeeds (true) or ctx ends.
func recreate(ctx context.Context, conn Conn, path string, data []byte, log *slog.Logger) bool {
	var b backoff
	for attempt := 0; ; attempt++ {
		err := ensureEphemeral(ctx, conn, path, data)
		if err == nil {
			log.Info("ephemeral node in place", "path", path, "attempts", attempt+1)
			return true
		}
		if ctx.Err() != nil || errors.Is(err, ErrClosed) {
			return false
		}
		// An outage fails every attempt: say it once, then quietly.
		level := slog.LevelDebug
		if attempt == 0 {
			level = slog.LevelWarn
		}
		log.Log(ctx, level, "re-creating ephemeral node failed, retrying", "path", path, "err", err)
		if !b.wait(ctx) {
			return false
		}
	}
}

// ensureEphemeral makes sure the ephemeral node path exists holding data.
func ensureEphemeral(ctx context.Context, conn Conn, path string, data []byte) error {
	for {
		err := conn.CreateEphemeral(ctx, path, data)
		if !errors.Is(err, ErrNodeExists) {
			return err
		}
		cur, _, gerr := conn.Get(ctx, path)
		switch {
		case gerr == nil && bytes.Equal(cur, data):
			return nil
		case gerr == nil:
			return fmt.Errorf("%s holds other data: %w", path, err)
		case !errors.Is(gerr, ErrNoNode):
			return gerr
		}
		// Gone between create and get: try again.
	}
}

func removeIfOurs(ctx context.Context, conn Conn, path string, data []byte, log *slog.Logger) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	cur, v, err := conn.Get(dctx, path)
	if err == nil && bytes.Equal(cur, data) {
		err = conn.Delete(dctx, path, v)
	}
	if err != nil && !errors.Is(err, ErrNoNode) && !errors.Is(err, ErrClosed) {
		log.Debug("removing ephemeral node failed; it goes with the session", "path", path, "err", err)
	}
}
