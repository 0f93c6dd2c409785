package coord

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/thunderyurts/thunderyurts/coord/internal/notify"
)

// GetJSON reads the node at path and decodes its JSON content into a new T.
// Errors: those of Conn.Get, and ErrBadData when the content does not decode.
func GetJSON[T any](ctx context.Context, conn Conn, path string) (*T, Version, error) {
	data, v, err := conn.Get(ctx, path)
	if err != nil {
		return nil, 0, err
	}
	val, err := decodeJSON[T](path, data)
	if err != nil {
		return nil, 0, err
	}
	return val, v, nil
}

// UpdateJSON is the read–change–compare-and-set loop every shared record goes
// through (vitess UpdateShardFields): it reads the record at path, lets fn
// change it, and writes it back only if nobody wrote in between; on a lost
// race it reads again and calls fn again, so fn must be a pure function of
// the record it is given. If fn returns ErrNoChange, or leaves the record
// encoding to the same bytes, nothing is written and the current record is
// returned. Any other error from fn is returned as is. The loop ends with ctx.
func UpdateJSON[T any](ctx context.Context, conn Conn, path string, fn func(*T) error) (*T, error) {
	for {
		data, v, err := conn.Get(ctx, path)
		if err != nil {
			return nil, err
		}
		val, err := decodeJSON[T](path, data)
		if err != nil {
			return nil, err
		}
		before, err := json.Marshal(val)
		if err != nil {
			return nil, fmt.Errorf("%w: encode %s: %w", ErrInvalid, path, err)
		}
		if err := fn(val); err != nil {
			if errors.Is(err, ErrNoChange) {
				// fn may have touched val before giving up: hand back what is stored.
				return decodeJSON[T](path, data)
			}
			return nil, err
		}
		next, err := json.Marshal(val)
		if err != nil {
			return nil, fmt.Errorf("%w: encode %s: %w", ErrInvalid, path, err)
		}
		if bytes.Equal(before, next) {
			return val, nil
		}
		_, err = conn.Update(ctx, path, next, v)
		if errors.Is(err, ErrBadVersion) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return val, nil
	}
}

func decodeJSON[T any](path string, data []byte) (*T, error) {
	val := new(T)
	if err := json.Unmarshal(data, val); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadData, path, err)
	}
	return val, nil
}

// createJSON creates the persistent node at path holding val's JSON.
func createJSON(ctx context.Context, conn Conn, path string, val any) (created bool, err error) {
	data, err := encodeJSON(path, val)
	if err != nil {
		return false, err
	}
	_, err = conn.Create(ctx, path, data)
	if errors.Is(err, ErrNodeExists) {
		return false, nil
	}
	return err == nil, err
}

// watchJSON watches the record at path and decodes every version. The
// channel holds the latest record and is closed when ctx ends, the node goes
// away, the session is in doubt or a version does not decode; watching again
// reports which.
func watchJSON[T any](ctx context.Context, conn Conn, path string) (*T, <-chan *T, error) {
	wctx, cancel := context.WithCancel(ctx)
	first, events, err := conn.Watch(wctx, path)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	val, err := decodeJSON[T](path, first.Data)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	out := make(chan *T, 1)
	go func() {
		defer close(out)
		defer cancel() // ends the underlying watch if we stop first
		for ev := range events {
			if ev.Err != nil {
				return
			}
			v, err := decodeJSON[T](path, ev.Data)
			if err != nil {
				return
			}
			notify.Latest(out, v)
		}
	}()
	return val, out, nil
}

// encodeJSON is val's JSON, to be stored at path.
func encodeJSON(path string, val any) ([]byte, error) {
	data, err := json.Marshal(val)
	if err != nil {
		return nil, fmt.Errorf("%w: encode %s: %w", ErrInvalid, path, err)
	}
	return data, nil
}
