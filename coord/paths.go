package coord

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Root is the znode under which every cluster lives.
const Root = "/thunderyurts"

// Every znode path of a cluster is built here, and only here:
//
//	/thunderyurts/<cluster>                 ClusterPath
//	/thunderyurts/<cluster>/meta            ClusterMeta
//	/thunderyurts/<cluster>/slots           SlotTable
//	/thunderyurts/<cluster>/groups/<name>   Group
//	/thunderyurts/<cluster>/nodes/<id>      NodeInfo, ephemeral
//	/thunderyurts/<cluster>/coordinators/   election of CoordinatorInfo
//	/thunderyurts/<cluster>/rebalance       RebalancePlan, the latest
//	/thunderyurts/<cluster>/migrations/<id> MigrationRecord, the last 50 finished

// ClusterPath is the znode holding all of cluster's state.
func ClusterPath(cluster string) string { return JoinPath(Root, cluster) }

func metaPath(cluster string) string        { return ClusterPath(cluster) + "/meta" }
func slotsPath(cluster string) string       { return ClusterPath(cluster) + "/slots" }
func groupsDir(cluster string) string       { return ClusterPath(cluster) + "/groups" }
func nodesDir(cluster string) string        { return ClusterPath(cluster) + "/nodes" }
func coordinatorsDir(cluster string) string { return ClusterPath(cluster) + "/coordinators" }
func rebalancePath(cluster string) string   { return ClusterPath(cluster) + "/rebalance" }
func migrationsDir(cluster string) string   { return ClusterPath(cluster) + "/migrations" }

func groupPath(cluster, group string) string  { return JoinPath(groupsDir(cluster), group) }
func nodePath(cluster, id string) string      { return JoinPath(nodesDir(cluster), id) }
func migrationPath(cluster, id string) string { return JoinPath(migrationsDir(cluster), id) }

// CheckName validates a cluster, group or node name, which becomes one path
// element; the error wraps ErrInvalid and says what kind of name it was.
// Everything that takes a name checks it; callers use it to refuse a bad
// name before they connect.
func CheckName(kind, name string) error {
	if err := validName(name); err != nil {
		return fmt.Errorf("%w: %s name %q: %w", ErrInvalid, kind, name, err)
	}
	return nil
}

// validName accepts what ZooKeeper accepts as a path element, minus the
// control characters it would reject only on the server.
func validName(name string) error {
	switch {
	case name == "":
		return errors.New("empty path element")
	case name == "." || name == "..":
		return errors.New("relative path element")
	case !utf8.ValidString(name):
		return errors.New("not valid UTF-8")
	}
	for _, r := range name {
		if r == '/' || r < 0x20 || (r >= 0x7f && r <= 0x9f) || (r >= 0xfff0 && r <= 0xffff) {
			return fmt.Errorf("character %U not allowed", r)
		}
	}
	return nil
}
