package backup

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/internal/clock"
	"github.com/thunderyurts/thunderyurts/internal/sysproc"
)

// cronParser reads five-field specs and, for tests and frequent backups,
// six fields with seconds first; descriptors like @daily too.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ErrBadSchedule: a cron spec that does not parse, or a keep below 1.
var ErrBadSchedule = errors.New("invalid backup schedule")

// CheckSchedule checks s before it is stored.
func CheckSchedule(s coord.BackupSchedule) error {
	if _, err := cronParser.Parse(s.Cron); err != nil {
		return fmt.Errorf("%w: cron spec %q: %v", ErrBadSchedule, s.Cron, err)
	}
	if s.Keep < 1 {
		return fmt.Errorf("%w: keep %d: want at least 1", ErrBadSchedule, s.Keep)
	}
	if err := CheckDest(s.To); err != nil {
		return err
	}
	return nil
}

// NextRun is when s next fires after now.
func NextRun(s coord.BackupSchedule, now time.Time) (time.Time, error) {
	sched, err := cronParser.Parse(s.Cron)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: cron spec %q: %v", ErrBadSchedule, s.Cron, err)
	}
	return sched.Next(now), nil
}

// schedulePoll is how often the leader reads the schedule again, so a
// change (set, clear) applies within it.
const schedulePoll = 2 * time.Second

// runHistory is how many runs' records stay in ZooKeeper.
const runHistory = 20

// Scheduler runs the cluster's backup schedule on the coordinator leader
// (daemon/coordinator Config.Backups). Each cron tick is claimed in
// ZooKeeper before it runs, so no tick runs twice, even when the leader
// changes during a run. A successful run is verified, and only then are
// old backups pruned to the schedule's keep.
type Scheduler struct {
	cluster *coord.Cluster
	log     *slog.Logger
	version string
	tls     *tls.Config

	mu           sync.Mutex
	last, lastOK coord.BackupRun
}

// NewScheduler returns the scheduler of cluster; toolVersion goes into
// the manifests; tlsConf, when set, makes the connections to the nodes
// mutual TLS.
func NewScheduler(cluster *coord.Cluster, toolVersion string, tlsConf *tls.Config, log *slog.Logger) *Scheduler {
	return &Scheduler{cluster: cluster, version: toolVersion, tls: tlsConf, log: log}
}

// LastRuns are the newest finished run and the newest successful one.
func (s *Scheduler) LastRuns() (last, lastOK coord.BackupRun) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.lastOK
}

func (s *Scheduler) noteRun(r coord.BackupRun) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Finished.After(s.last.Finished) {
		s.last = r
	}
	if r.OK() && r.Finished.After(s.lastOK.Finished) {
		s.lastOK = r
	}
}

// Run fires the schedule until ctx, the leadership, ends; id names the
// coordinator in the runs it claims. Ticks from before it started are not
// caught up.
func (s *Scheduler) Run(ctx context.Context, id string) {
	if st, err := s.cluster.BackupState(ctx); err == nil {
		last, lastOK := st.LastFinished()
		for _, r := range []*coord.BackupRun{last, lastOK} {
			if r != nil {
				s.noteRun(*r)
			}
		}
	}
	var spec string
	var next time.Time
	for ctx.Err() == nil {
		sched, err := s.cluster.BackupSchedule(ctx)
		switch {
		case errors.Is(err, coord.ErrNoNode):
			spec, next = "", time.Time{}
		case err != nil:
			s.log.Warn("read backup schedule", "err", err)
		case sched.Cron != spec:
			spec = sched.Cron
			if next, err = NextRun(*sched, time.Now()); err != nil {
				s.log.Warn("backup schedule not run", "err", err)
				next = time.Time{}
			} else {
				s.log.Info("backup schedule", "cron", spec, "to", sched.To, "keep", sched.Keep, "next", next)
			}
		case !next.IsZero() && !time.Now().Before(next):
			tick := next
			s.fire(ctx, id, *sched, tick)
			next, _ = NextRun(*sched, time.Now())
			continue
		}
		wait := schedulePoll
		if !next.IsZero() {
			wait = min(wait, time.Until(next))
		}
		_ = clock.Sleep(ctx, wait)
	}
}

// fire claims tick and, if this leader won it, runs it.
func (s *Scheduler) fire(ctx context.Context, id string, sched coord.BackupSchedule, tick time.Time) {
	run := coord.BackupRun{Tick: tick, Coordinator: id, Started: time.Now().UTC()}
	claimed, err := s.cluster.ClaimBackupRun(ctx, run)
	if err != nil || !claimed {
		if err != nil {
			s.log.Warn("claim backup tick", "tick", tick, "err", err)
		}
		return
	}
	s.log.Info("scheduled backup started", "tick", tick, "to", sched.To)
	res, err := s.runOnce(ctx, sched)
	run.Finished, run.ID, run.Keys, run.Bytes = time.Now().UTC(), res.ID, res.Keys, res.Bytes
	if err != nil {
		run.Err = err.Error()
		s.log.Error("scheduled backup failed", "tick", tick, "id", res.ID, "err", err)
	} else {
		s.log.Info("scheduled backup done", "tick", tick, "id", res.ID, "keys", res.Keys, "bytes", res.Bytes,
			"took", run.Finished.Sub(run.Started).Round(time.Millisecond))
	}
	s.noteRun(run)
	// The outcome is recorded even when the leadership just ended, so the
	// status shows it.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.cluster.FinishBackupRun(rctx, run); err != nil {
		s.log.Warn("record backup run", "tick", tick, "err", err)
	}
	if err := s.cluster.TrimBackupRuns(rctx, runHistory); err != nil {
		s.log.Warn("trim backup runs", "err", err)
	}
}

// runOnce backs up, verifies what it wrote, and then prunes to keep.
func (s *Scheduler) runOnce(ctx context.Context, sched coord.BackupSchedule) (Result, error) {
	store, err := OpenStore(ctx, sched.To, StoreOptions{S3Endpoint: sched.S3Endpoint})
	if err != nil {
		return Result{}, err
	}
	res, err := Run(ctx, RunConfig{Cluster: s.cluster, Store: store, ToolVersion: s.version, Logger: s.log, TLS: s.tls})
	if err != nil {
		return res, err
	}
	// Reading backups back is background work, as Run's is.
	return res, sysproc.Background(func() error { return s.verifyAndPrune(ctx, store, sched, res.ID) })
}

// verifyAndPrune verifies the backup id a scheduled run wrote, and then
// prunes to the schedule's keep.
func (s *Scheduler) verifyAndPrune(ctx context.Context, store Store, sched coord.BackupSchedule, id string) error {
	if err := Verify(ctx, store, id); err != nil {
		return fmt.Errorf("verify backup %s: %w", id, err)
	}
	// A backup a scheduled run verified counts as good without being read
	// again; any other (a manual run's, or one older than the history)
	// is verified now.
	verified := map[string]bool{id: true}
	if runs, err := s.cluster.BackupRuns(ctx); err == nil {
		for _, r := range runs {
			if r.OK() {
				verified[r.ID] = true
			}
		}
	}
	removed, err := Prune(ctx, store, sched.Keep, func(in Info) bool {
		return verified[in.ID] || Verify(ctx, store, in.ID) == nil
	})
	if err != nil {
		return fmt.Errorf("prune to %d backups: %w", sched.Keep, err)
	}
	if len(removed) > 0 {
		s.log.Info("pruned backups", "removed", removed, "keep", sched.Keep)
	}
	return nil
}
