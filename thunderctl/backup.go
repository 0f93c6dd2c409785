package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/admin"
	"github.com/thunderyurts/thunderyurts/backup"
	"github.com/thunderyurts/thunderyurts/client/bench"
	"github.com/thunderyurts/thunderyurts/coord"
)

// backupCommand is `admin backup`; restoreCommand is `admin restore`.
func backupCommand() *cli.Command {
	return &cli.Command{
		Name:  "backup",
		Usage: "back the cluster up to a directory or an S3 bucket, list, verify and schedule backups",
		Description: "DEST is a directory (/backups or file:///backups) or an S3 bucket (s3://bucket/prefix, credentials from " +
			"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY). Example:\n   thunderctl admin backup run --to /backups",
		Subcommands: []*cli.Command{
			{
				Name:  "run",
				Usage: "back the cluster up now, online: each group's slots cut at one log position",
				Description: "Example:\n   thunderctl admin backup run --to /backups\n" +
					"   thunderctl admin backup run --to s3://bucket/thunder --s3-endpoint http://minio:9000",
				Flags: []cli.Flag{destFlag("to"), s3EndpointFlag()},
				Action: func(c *cli.Context) error {
					tlsConf, err := clientTLS(c)
					if err != nil {
						return err
					}
					return withBackupStore(c, "to", func(ctx context.Context, cl *coord.Cluster, store backup.Store, f admin.Format) error {
						res, err := backup.Run(ctx, backup.RunConfig{Cluster: cl, Store: store, Progress: progressBar(c, f),
							ToolVersion: readBuildInfo().Version, Logger: newLogger(c, slog.LevelError), TLS: tlsConf})
						if err != nil {
							return err
						}
						return admin.PrintBackupResult(c.App.Writer, "backup", res, f)
					})
				},
			},
			{
				Name:  "list",
				Usage: "the backups at DEST: id, time, keys, bytes, complete or incomplete",
				Description: "Example:\n   thunderctl admin backup list --to /backups\n" +
					"   thunderctl admin backup list --to s3://bucket/thunder -o json",
				Flags: []cli.Flag{destFlag("to"), s3EndpointFlag()},
				Action: func(c *cli.Context) error {
					return withStore(c, c.String("to"), func(ctx context.Context, store backup.Store, f admin.Format) error {
						list, err := backup.List(ctx, store)
						if err != nil {
							return err
						}
						return admin.PrintBackups(c.App.Writer, admin.BackupRows(list), f)
					})
				},
			},
			{
				Name:      "verify",
				Usage:     "read a backup's manifest and every file, checking every checksum",
				ArgsUsage: "DEST/ID",
				Description: "Example:\n   thunderctl admin backup verify /backups/20261202T143000Z-a1b2c3\n" +
					"Exits 1 naming the first damaged or missing file.",
				Flags: []cli.Flag{s3EndpointFlag()},
				Action: func(c *cli.Context) error {
					dest, id, err := backupArg(c)
					if err != nil {
						return err
					}
					return withStore(c, dest, func(ctx context.Context, store backup.Store, f admin.Format) error {
						if err := backup.Verify(ctx, store, id); err != nil {
							return err
						}
						m, err := backup.OpenSet(ctx, store, id)
						if err != nil {
							return err
						}
						row := admin.BackupRow{ID: id, Time: m.Start, Keys: m.Keys(), Bytes: m.Bytes(), Status: "complete"}
						return admin.PrintBackups(c.App.Writer, []admin.BackupRow{row}, f)
					})
				},
			},
			{
				Name:        "schedule",
				Usage:       "backups the coordinator leader runs by itself, with retention",
				Description: "Example:\n   thunderctl admin backup schedule set --cron '@daily' --to /backups --keep 7",
				Subcommands: []*cli.Command{
					{
						Name:  "set",
						Usage: "back up on a cron schedule, keeping the newest --keep complete backups",
						Description: "SPEC is a cron spec of five fields (minute hour day month weekday), six with seconds first, " +
							"or @hourly, @daily, @every 6h. Example:\n   thunderctl admin backup schedule set --cron '0 3 * * *' --to /backups --keep 7",
						Flags: []cli.Flag{
							requiredFlag("cron", "when to run, a cron `SPEC`", checkCron),
							destFlag("to"),
							intFlag("keep", 7, 1, 10000, "complete backups to keep"),
							s3EndpointFlag(),
						},
						Action: func(c *cli.Context) error {
							return withCluster(c, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
								s := coord.BackupSchedule{Cron: c.String("cron"), To: c.String("to"), Keep: c.Int("keep"),
									S3Endpoint: c.String("s3-endpoint"), SetAt: time.Now().UTC()}
								if err := backup.CheckSchedule(s); err != nil {
									return usageIn(c, "%v", err)
								}
								if err := cl.SetBackupSchedule(ctx, s); err != nil {
									return err
								}
								return showSchedule(ctx, c, cl, f)
							})
						},
					},
					{
						Name:        "show",
						Usage:       "the schedule, its last run and the next run time",
						Description: "Example:\n   thunderctl admin backup schedule show -o json",
						Action: func(c *cli.Context) error {
							return withCluster(c, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
								return showSchedule(ctx, c, cl, f)
							})
						},
					},
					{
						Name:        "clear",
						Usage:       "stop scheduled backups (the backups stay)",
						Description: "Example:\n   thunderctl admin backup schedule clear",
						Action: func(c *cli.Context) error {
							return withCluster(c, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
								if err := cl.ClearBackupSchedule(ctx); err != nil {
									return err
								}
								return showSchedule(ctx, c, cl, f)
							})
						},
					},
				},
			},
		},
	}
}

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:  "restore",
		Usage: "load a backup into the cluster, routing every key by the current slot table",
		Description: "The backup is verified whole before anything is written. A cluster that holds keys is refused " +
			"unless --overwrite; rerun with --overwrite to finish an interrupted restore. Example:\n" +
			"   thunderctl admin restore --from /backups/20261202T143000Z-a1b2c3",
		Flags: []cli.Flag{
			requiredFlag("from", "the backup, `DEST/ID`", checkBackupPath),
			boolFlag("overwrite", "restore into a cluster that holds keys: a key in both gets the backup's value"),
			s3EndpointFlag(),
		},
		Action: func(c *cli.Context) error {
			dest, id, _ := backup.ParseSetRef(c.String("from")) // checked by the flag
			tlsConf, err := clientTLS(c)
			if err != nil {
				return err
			}
			return inCluster(c.Context, c, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
				store, err := openStore(ctx, c, dest)
				if err != nil {
					return err
				}
				res, err := backup.Restore(ctx, backup.RestoreConfig{Cluster: cl, Store: store, ID: id, Overwrite: c.Bool("overwrite"),
					Progress: progressBar(c, f), Logger: newLogger(c, slog.LevelError), TLS: tlsConf})
				if err != nil {
					return err
				}
				return admin.PrintBackupResult(c.App.Writer, "restore", res, f)
			})
		},
	}
}

func destFlag(name string) cli.Flag {
	return requiredFlag(name, "backup destination `DEST`: a directory, file:///dir or s3://bucket/prefix", backup.CheckDest)
}

func s3EndpointFlag() cli.Flag {
	return stringFlag("s3-endpoint", "", "`URL` of an S3-compatible service (default: AWS_ENDPOINT_URL, else AWS)", nil)
}

func checkCron(spec string) error {
	_, err := backup.NextRun(coord.BackupSchedule{Cron: spec}, time.Now())
	return err
}

func checkBackupPath(p string) error {
	_, _, err := backup.ParseSetRef(p)
	return err
}

// backupArg is the one DEST/ID argument.
func backupArg(c *cli.Context) (dest, id string, err error) {
	if c.NArg() != 1 {
		return "", "", usageIn(c, "%s takes one argument: DEST/ID", commandPath(c))
	}
	dest, id, err = backup.ParseSetRef(c.Args().First())
	if err != nil {
		return "", "", usageIn(c, "%v", err)
	}
	return dest, id, nil
}

func openStore(ctx context.Context, c *cli.Context, dest string) (backup.Store, error) {
	octx, cancel := context.WithTimeout(ctx, c.Duration("timeout"))
	defer cancel()
	return backup.OpenStore(octx, dest, backup.StoreOptions{S3Endpoint: c.String("s3-endpoint")})
}

// withStore opens dest and runs fn; a backup store needs no cluster.
func withStore(c *cli.Context, dest string, fn func(context.Context, backup.Store, admin.Format) error) error {
	ctx := c.Context
	store, err := openStore(ctx, c, dest)
	if err != nil {
		return err
	}
	return fn(ctx, store, outputFormat(c))
}

// withBackupStore connects to the cluster and opens the store named by
// flag; the run itself is not bounded by --timeout.
func withBackupStore(c *cli.Context, flag string, fn func(context.Context, *coord.Cluster, backup.Store, admin.Format) error) error {
	return inCluster(c.Context, c, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
		store, err := openStore(ctx, c, c.String(flag))
		if err != nil {
			return err
		}
		return fn(ctx, cl, store, f)
	})
}

func showSchedule(ctx context.Context, c *cli.Context, cl *coord.Cluster, f admin.Format) error {
	st, err := cl.BackupState(ctx)
	if err != nil {
		return err
	}
	var next *time.Time
	if st.Schedule != nil {
		if t, err := backup.NextRun(*st.Schedule, time.Now()); err == nil {
			next = &t
		}
	}
	return admin.PrintBackupSchedule(c.App.Writer, admin.BuildBackupSchedule(st, next), f)
}

// progressBar draws the run's progress on a terminal, as bench does;
// elsewhere (a pipe, a log) it writes a plain line every few seconds, and
// nothing for -o json.
func progressBar(c *cli.Context, f admin.Format) func(backup.Progress) {
	w := c.App.ErrWriter
	if f == admin.FormatJSON {
		return nil
	}
	if !bench.IsTerminal(os.Stderr) {
		var last time.Time
		return func(p backup.Progress) {
			if time.Since(last) >= 5*time.Second || p.Done {
				last = time.Now()
				fmt.Fprintln(w, progressLine(p))
			}
		}
	}
	line := &bench.Line{W: w}
	return func(p backup.Progress) {
		if p.Done {
			line.Clear() // the summary starts on a clean line
			return
		}
		line.Draw(progressLine(p))
	}
}

func progressLine(p backup.Progress) string {
	return fmt.Sprintf("%s %d/%d slots %d keys %.1f MB %.0f keys/s %.1f MB/s",
		bench.Bar(float64(p.Slots)/float64(max(p.SlotTotal, 1))), p.Slots, p.SlotTotal,
		p.Keys, float64(p.Bytes)/1e6, p.KeysPerSec(), p.BytesPerSec()/1e6)
}
