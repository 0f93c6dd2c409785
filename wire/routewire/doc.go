// Package routewire converts the cluster's route table (coord.RouteTable) to
// and from its wire form (wire.Routes): coordinators encode it, clients
// decode it. It lives apart from both so that coord stays free of the wire
// protocol and wire free of the cluster model.
package routewire
