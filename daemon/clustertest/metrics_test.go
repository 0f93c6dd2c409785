package clustertest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/memcoord"
	"github.com/thunderyurts/thunderyurts/daemon/coordinator"
)

// idleBackups is a backup schedule that never runs, so a coordinator
// exports the backup series.
type idleBackups struct{}

func (idleBackups) Run(ctx context.Context, _ string)        { <-ctx.Done() }
func (idleBackups) LastRuns() (last, lastOK coord.BackupRun) { return }

// documentedMetrics reads docs/metrics.md: the metric names of each
// "## " section's tables.
func documentedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `([a-z_:]+)` \\|")
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if s, ok := strings.CutPrefix(line, "## "); ok {
			section = s
		}
		if m := row.FindStringSubmatch(line); m != nil {
			out[section] = append(out[section], m[1])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// get fetches http://addr/path and returns the status and body.
func get(ctx context.Context, addr, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// scrape returns the metric families of addr's /metrics with the values of
// their unlabelled (or first) sample.
func scrape(t *testing.T, addr string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, body, err := get(ctx, addr, "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("scrape %s: %d %v", addr, code, err)
	}
	return parseFamilies(body)
}

func parseFamilies(body string) map[string]string {
	out := map[string]string{}
	for line := range strings.SplitSeq(body, "\n") {
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			out[strings.Fields(f)[0]] = ""
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ = strings.Cut(name, "{")
		if v, seen := out[name]; seen && v == "" {
			out[name] = value
		}
	}
	return out
}

// TestMetricsDocumented scrapes a coordinator (with a backup schedule) and
// a primary data node: every name docs/metrics.md lists for it is there,
// and every thunder_ series there is documented.
func TestMetricsDocumented(t *testing.T) {
	c := New(t, Options{HTTP: true, ReplicationFactor: 2,
		Backups: func(*coord.Cluster) coordinator.Backups { return idleBackups{} }})
	c.StartCoordinator("c1")
	c.StartNode("n1", "g1")
	c.StartNode("n2", "g1")
	c.WaitGroup("g1", func(g *coord.Group) bool { return len(g.ISR) == 2 })
	c.WaitServing()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cli := c.Client()
	for i := range 10 {
		if err := cli.Put(ctx, []byte(strconv.Itoa(i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	scraped := map[string]map[string]string{
		"coordinator": scrape(t, c.HTTPAddr("c1")),
		"data node":   scrape(t, c.HTTPAddr(c.Primary("g1"))),
	}
	want := map[string][]string{ // doc section → daemons exporting it
		"Every daemon":                       {"coordinator", "data node"},
		"Data node":                          {"data node"},
		"Coordinator":                        {"coordinator"},
		"Coordinator with scheduled backups": {"coordinator"},
	}
	docs := documentedMetrics(t)
	documented := map[string]bool{}
	for section, names := range docs {
		daemons, ok := want[section]
		if !ok {
			t.Errorf("docs/metrics.md: section %q lists metrics; the test does not know which daemon exports them", section)
		}
		for _, name := range names {
			documented[name] = true
			for _, d := range daemons {
				if _, ok := scraped[d][name]; !ok {
					t.Errorf("%s: documented metric %s not exported", d, name)
				}
			}
		}
	}
	for d, fams := range scraped {
		for name := range fams {
			if strings.HasPrefix(name, "thunder_") && !documented[name] {
				t.Errorf("%s exports %s, which docs/metrics.md does not list", d, name)
			}
		}
	}
	if len(documented) < 30 {
		t.Fatalf("docs/metrics.md lists only %d metrics: the parser is broken", len(documented))
	}
	node := scraped["data node"]
	if node["thunder_data_is_primary"] != "1" || node["thunder_data_isr_size"] != "2" {
		t.Errorf("primary reads is_primary %q isr_size %q, want 1 and 2", node["thunder_data_is_primary"], node["thunder_data_isr_size"])
	}
}

// metricValue scrapes name's unlabelled value from addr.
func metricValue(ctx context.Context, addr, name string) (string, error) {
	code, body, err := get(ctx, addr, "/metrics")
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return "", fmt.Errorf("status %d", code)
	}
	return parseFamilies(body)[name], nil
}

// After a secondary is killed, the primary drops it from the in-sync set
// and reads under-replicated within the session timeout.
func TestUnderReplicatedAfterSecondaryKilled(t *testing.T) {
	c := New(t, Options{HTTP: true})
	c.StartCoordinator("c1")
	for _, n := range []string{"n1", "n2", "n3"} {
		c.StartNode(n, "g1")
	}
	c.WaitGroup("g1", func(g *coord.Group) bool { return len(g.ISR) == 3 })
	primary := c.Primary("g1")
	addr := c.HTTPAddr(primary)
	c.Eventually("under-replicated reads 0", func(ctx context.Context) bool {
		v, err := metricValue(ctx, addr, "thunder_data_under_replicated")
		return err == nil && v == "0"
	})
	secondary := slices.DeleteFunc([]string{"n1", "n2", "n3"}, func(n string) bool { return n == primary })[0]
	c.Kill(secondary)
	killed := time.Now()
	c.Eventually("under-replicated reads 1", func(ctx context.Context) bool {
		v, err := metricValue(ctx, addr, "thunder_data_under_replicated")
		return err == nil && v == "1"
	})
	if took := time.Since(killed); took > memcoord.SessionTimeout {
		t.Errorf("under-replicated read 1 after %v, later than the session timeout %v", took, memcoord.SessionTimeout)
	}
}

// /readyz: 200 on an in-sync secondary; 503 once it is cut off the
// primary and out of the in-sync set; 200 again when it has caught up.
func TestReadyzFollowsInSync(t *testing.T) {
	c := New(t, Options{HTTP: true, ReplicationFactor: 2})
	c.StartCoordinator("c1")
	c.StartNode("n1", "g1")
	c.StartNode("n2", "g1")
	c.WaitGroup("g1", func(g *coord.Group) bool { return len(g.ISR) == 2 })
	primary := c.Primary("g1")
	secondary := map[string]string{"n1": "n2", "n2": "n1"}[primary]
	readyz := func(name string, want int) {
		t.Helper()
		addr := c.HTTPAddr(name)
		c.Eventually(fmt.Sprintf("%s /readyz %d", name, want), func(ctx context.Context) bool {
			code, _, err := get(ctx, addr, "/readyz")
			return err == nil && code == want
		})
	}
	readyz(primary, http.StatusOK)
	readyz(secondary, http.StatusOK)
	c.Partition(secondary, primary)
	c.WaitGroup("g1", func(g *coord.Group) bool { return len(g.ISR) == 1 })
	readyz(secondary, http.StatusServiceUnavailable)
	readyz(primary, http.StatusOK)
	code, _, err := get(context.Background(), c.HTTPAddr(secondary), "/healthz")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/healthz of a live secondary: %d %v", code, err)
	}
	c.Heal(secondary, primary)
	c.WaitGroup("g1", func(g *coord.Group) bool { return len(g.ISR) == 2 })
	readyz(secondary, http.StatusOK)
}

// The dashboard queries only documented series.
func TestDashboardUsesDocumentedMetrics(t *testing.T) {
	documented := map[string]bool{}
	for _, names := range documentedMetrics(t) {
		for _, n := range names {
			documented[n] = true
		}
	}
	b, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`\b(thunder|go|process)_[a-z_]+`).FindAllString(string(b), -1)
	if len(used) < 20 {
		t.Fatalf("the dashboard uses only %d series", len(used))
	}
	for _, name := range used {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && documented[base] {
				name = base
			}
		}
		if !documented[name] {
			t.Errorf("the dashboard queries %s, which docs/metrics.md does not list", name)
		}
	}
}

// A lost ZooKeeper session counts one disconnect, and the session reads up
// again once the daemon has a new one.
func TestZooKeeperSessionMetrics(t *testing.T) {
	c := New(t, Options{HTTP: true, ReplicationFactor: 1})
	c.StartCoordinator("c1")
	c.StartNode("n1", "g1")
	c.WaitServing()
	for _, name := range []string{"c1", "n1"} {
		addr := c.HTTPAddr(name)
		value := func(metric string) func(ctx context.Context) (string, bool) {
			return func(ctx context.Context) (string, bool) {
				v, err := metricValue(ctx, addr, metric)
				return v, err == nil
			}
		}
		up, disconnects := value("thunder_zookeeper_session_up"), value("thunder_zookeeper_disconnects_total")
		c.Eventually(name+" session up, no disconnects", func(ctx context.Context) bool {
			u, ok1 := up(ctx)
			d, ok2 := disconnects(ctx)
			return ok1 && ok2 && u == "1" && d == "0"
		})
		c.ExpireSession(name)
		c.Eventually(name+" counts the lost session and has a new one", func(ctx context.Context) bool {
			u, ok1 := up(ctx)
			d, ok2 := disconnects(ctx)
			return ok1 && ok2 && u == "1" && d == "1"
		})
	}
}
