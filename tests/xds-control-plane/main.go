// xds-control-plane: a small xDS management server for the runtime tests, on go-control-plane's snapshot
// cache and ADS server (State of the World and delta).
//
// It serves whatever the test puts: PUT /snapshot with a JSON body
//
//	{"listeners": [...], "routes": [...], "clusters": [...], "endpoints": [...]}
//
// where each item is an Envoy v3 resource in protobuf JSON (Listener, RouteConfiguration, Cluster,
// ClusterLoadAssignment; nested Any fields carry "@type"). Every PUT becomes the next snapshot version,
// served to every node. GET /status reports, per resource type, the version the clients last ACKed and the
// last NACK's error, so a test can wait until its client has taken an update (or see why it refused one),
// and how many ADS streams are open (a client gone has closed its stream).
//
// Once both ports listen it prints one JSON line, {"xds": "host:port", "admin": "host:port"}, on stdout.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	// Registers the router filter's type, so "@type" inside a listener's HttpConnectionManager resolves.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	// Registers HttpConnectionManager, the api_listener's payload.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The one node key: every client gets the same snapshot, whatever node id its bootstrap names.
const fleet = "fleet"

type everyNode struct{}

func (everyNode) ID(*core.Node) string { return fleet }

// nackPatient is the snapshot cache, except that a NACK waits for the next snapshot. go-control-plane compares
// the version a request carries with the snapshot's: a NACK carries the last version the client accepted, so
// the cache would send the refused snapshot again at once, and the client refuse it again, in a tight loop.
type nackPatient struct {
	cache.SnapshotCache
}

func (c nackPatient) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	if req.GetErrorDetail() != nil {
		if snapshot, err := c.GetSnapshot(fleet); err == nil {
			req = proto.Clone(req).(*cache.Request)
			req.VersionInfo = snapshot.GetVersion(req.GetTypeUrl())
		}
	}
	return c.SnapshotCache.CreateWatch(req, sub, out)
}

// snapshotRequest is the body of PUT /snapshot: raw JSON per resource, decoded by protojson below.
type snapshotRequest struct {
	Listeners []json.RawMessage `json:"listeners"`
	Routes    []json.RawMessage `json:"routes"`
	Clusters  []json.RawMessage `json:"clusters"`
	Endpoints []json.RawMessage `json:"endpoints"`
}

// typeStatus is what the clients last said about one resource type.
type typeStatus struct {
	Acked string `json:"acked"`
	Nack  string `json:"nack,omitempty"`
	// The version the NACK refused (from its response nonce): a waiter for a newer version is not answered by an
	// older refusal that the client has not yet replaced with its answer to the newer one.
	Nacked string `json:"nacked,omitempty"`
}

type controlPlane struct {
	cache cache.SnapshotCache

	mu      sync.Mutex
	version int
	status  map[string]typeStatus
	streams int // open ADS streams: a client that went away has closed its stream
	// The version each response nonce carried, per stream, so that a NACK (which names a nonce) names a version.
	sent map[int64]map[string]string
}

// decodeAll parses each item as a fresh message from newMessage; the error names the list and the index.
func decodeAll(list string, items []json.RawMessage, newMessage func() proto.Message) ([]types.Resource, error) {
	out := make([]types.Resource, 0, len(items))
	for i, raw := range items {
		msg := newMessage()
		if err := protojson.Unmarshal(raw, msg); err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", list, i, err)
		}
		out = append(out, msg)
	}
	return out, nil
}

func (cp *controlPlane) resources(req snapshotRequest) (map[resource.Type][]types.Resource, error) {
	lists := []struct {
		name  string
		typ   resource.Type
		items []json.RawMessage
		new   func() proto.Message
	}{
		{"listeners", resource.ListenerType, req.Listeners, func() proto.Message { return &listener.Listener{} }},
		{"routes", resource.RouteType, req.Routes, func() proto.Message { return &route.RouteConfiguration{} }},
		{"clusters", resource.ClusterType, req.Clusters, func() proto.Message { return &cluster.Cluster{} }},
		{"endpoints", resource.EndpointType, req.Endpoints,
			func() proto.Message { return &endpoint.ClusterLoadAssignment{} }},
	}
	out := map[resource.Type][]types.Resource{}
	for _, l := range lists {
		decoded, err := decodeAll(l.name, l.items, l.new)
		if err != nil {
			return nil, err
		}
		out[l.typ] = decoded
	}
	return out, nil
}

// putSnapshot serves the body as the next version. No Snapshot.Consistent(): it does not follow an
// api_listener's RDS reference (gRPC's listeners have no filter chains), so it would refuse every snapshot.
func (cp *controlPlane) putSnapshot(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		httpError(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	var req snapshotRequest
	decoder := json.NewDecoder(bytes.NewReader(body))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "the body is not {listeners, routes, clusters, endpoints}: "+err.Error())
		return
	}
	resources, err := cp.resources(req)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	version := strconv.Itoa(cp.version + 1)
	snapshot, err := cache.NewSnapshot(version, resources)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := cp.cache.SetSnapshot(r.Context(), fleet, snapshot); err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	cp.version++
	writeJSON(w, http.StatusOK, map[string]string{"version": version})
}

func (cp *controlPlane) getStatus(w http.ResponseWriter, _ *http.Request) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"version": strconv.Itoa(cp.version), "types": cp.status, "streams": cp.streams,
	})
}

func (cp *controlPlane) onStreamOpen(context.Context, int64, string) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.streams++
	return nil
}

func (cp *controlPlane) onStreamClosed(stream int64, _ *core.Node) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.streams--
	delete(cp.sent, stream)
}

// onResponse remembers the version a response nonce carried (see typeStatus.Nacked).
func (cp *controlPlane) onResponse(_ context.Context, stream int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.sent[stream] == nil {
		cp.sent[stream] = map[string]string{}
	}
	cp.sent[stream][resp.GetNonce()] = resp.GetVersionInfo()
}

// onRequest records ACKs and NACKs. In State of the World, a request carrying error_detail is a NACK of
// the response nonce; any other request repeats the version the client last accepted.
func (cp *controlPlane) onRequest(stream int64, req *discovery.DiscoveryRequest) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	s := cp.status[req.GetTypeUrl()]
	// Each response is answered once (an ACK or a NACK naming its nonce): its entry is no longer needed after this.
	nacked := cp.sent[stream][req.GetResponseNonce()]
	delete(cp.sent[stream], req.GetResponseNonce())
	if detail := req.GetErrorDetail(); detail != nil {
		s.Nack = detail.GetMessage()
		s.Nacked = nacked
		log.Printf("NACK %s of version %q (still at version %q): %s", req.GetTypeUrl(), s.Nacked, req.GetVersionInfo(), s.Nack)
	} else {
		s.Nack, s.Nacked = "", ""
	}
	s.Acked = req.GetVersionInfo()
	cp.status[req.GetTypeUrl()] = s
	return nil
}

func httpError(w http.ResponseWriter, code int, message string) {
	writeJSON(w, code, map[string]string{"error": message})
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

func main() {
	host := flag.String("host", "127.0.0.1", "address both servers listen on")
	xdsPort := flag.Int("xds-port", 0, "ADS gRPC port (0: any free port)")
	adminPort := flag.Int("admin-port", 0, "HTTP admin port (0: any free port)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cp := &controlPlane{status: map[string]typeStatus{}, sent: map[int64]map[string]string{}}
	cp.cache = cache.NewSnapshotCache(true, everyNode{}, nil)
	xdsServer := server.NewServer(ctx, nackPatient{cp.cache}, server.CallbackFuncs{
		StreamOpenFunc:     cp.onStreamOpen,
		StreamClosedFunc:   cp.onStreamClosed,
		StreamRequestFunc:  cp.onRequest,
		StreamResponseFunc: cp.onResponse,
	})

	grpcServer := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(grpcServer, xdsServer)
	xdsListener, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*xdsPort)))
	if err != nil {
		log.Fatalf("xds listen: %v", err)
	}
	adminListener, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*adminPort)))
	if err != nil {
		log.Fatalf("admin listen: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /snapshot", cp.putSnapshot)
	mux.HandleFunc("GET /status", cp.getStatus)
	admin := &http.Server{Handler: mux}

	go func() {
		if err := grpcServer.Serve(xdsListener); err != nil {
			log.Fatalf("xds serve: %v", err)
		}
	}()
	go func() {
		if err := admin.Serve(adminListener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("admin serve: %v", err)
		}
	}()
	ready, _ := json.Marshal(map[string]string{"xds": xdsListener.Addr().String(), "admin": adminListener.Addr().String()})
	fmt.Println(string(ready))

	<-ctx.Done()
	_ = admin.Close()
	grpcServer.Stop()
}
