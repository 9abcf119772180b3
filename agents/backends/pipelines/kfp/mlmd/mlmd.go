package mlmd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	pb "github.com/kubeflow/pipelines/third_party/ml-metadata/go/ml_metadata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/branchml/branchml/agents/backends/pipelines"
)

// Type names KFP v2 uses in ML Metadata.
const (
	RunContextType = "system.PipelineRun"
	MetricsType    = "system.Metrics"
)

// Client reads one ML Metadata store. Its methods are safe for concurrent use.
type Client struct {
	addr string
	conn *grpc.ClientConn
	svc  pb.MetadataStoreServiceClient
}

// Dial returns a client of the MetadataStoreService at addr ("host:port",
// e.g. KFP's "metadata-grpc-service.kubeflow:8080"): plaintext when tlsCfg
// is nil. The connection is made lazily, on the first call.
func Dial(addr string, tlsCfg *tls.Config) (*Client, error) {
	if addr == "" || strings.Contains(addr, "://") {
		return nil, fmt.Errorf("ML Metadata address %q: want host:port, e.g. metadata-grpc-service.kubeflow:8080", addr)
	}
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("ML Metadata %s: %w", addr, err)
	}
	return &Client{addr: addr, conn: conn, svc: pb.NewMetadataStoreServiceClient(conn)}, nil
}

// Addr is the address the client talks to.
func (c *Client) Addr() string { return c.addr }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Artifact is one artifact as ML Metadata records it.
type Artifact struct {
	ID int64
	// Type is the artifact type's name (schema title), e.g. "system.Metrics".
	Type string
	// URI is where the artifact's content lives, e.g.
	// "minio://mlpipeline/v2/artifacts/<pipeline>/<run>/<task>/<salt>/metrics".
	URI string
	// Properties are the custom properties: float64 (double_value), int64
	// (int_value), string (string_value) or a decoded struct_value.
	Properties map[string]any
}

// UnreachableError is a store that did not answer (connection refused,
// DNS, timeout: gRPC UNAVAILABLE or DEADLINE_EXCEEDED).
type UnreachableError struct {
	Addr string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("ML Metadata at %s cannot be reached: %v", e.Addr, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// wrap names the store and the call, and marks unreachable stores.
func (c *Client) wrap(call string, err error) error {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return &UnreachableError{Addr: c.addr, Err: fmt.Errorf("%s: %w", call, err)}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &UnreachableError{Addr: c.addr, Err: fmt.Errorf("%s: %w", call, err)}
	}
	return fmt.Errorf("ML Metadata at %s: %s: %w", c.addr, call, err)
}

// ArtifactsByID returns the artifacts with the given IDs (those KFP lists
// in run_details.task_details[].outputs[].artifact_ids), in that order; an
// ID the store does not know is an error matching pipelines.ErrNotFound.
func (c *Client) ArtifactsByID(ctx context.Context, ids []int64) ([]Artifact, error) {
	res, err := c.svc.GetArtifactsByID(ctx, &pb.GetArtifactsByIDRequest{ArtifactIds: ids})
	if err != nil {
		return nil, c.wrap("GetArtifactsByID", err)
	}
	byID := map[int64]*pb.Artifact{}
	for _, a := range res.GetArtifacts() {
		byID[a.GetId()] = a
	}
	out := make([]Artifact, 0, len(ids))
	for _, id := range ids {
		a, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("ML Metadata at %s has no artifact %d: %w", c.addr, id, pipelines.ErrNotFound)
		}
		out = append(out, convert(a))
	}
	return out, c.resolveTypes(ctx, out, res.GetArtifacts())
}

// resolveTypes fills Type from the type IDs where the store left it out
// (older MLMD servers fill only type_id).
func (c *Client) resolveTypes(ctx context.Context, out []Artifact, raw []*pb.Artifact) error {
	typeOf := map[int64]int64{}
	var missing []int64
	for _, a := range raw {
		typeOf[a.GetId()] = a.GetTypeId()
		if a.GetType() == "" {
			missing = append(missing, a.GetTypeId())
		}
	}
	if len(missing) == 0 {
		return nil
	}
	res, err := c.svc.GetArtifactTypesByID(ctx, &pb.GetArtifactTypesByIDRequest{TypeIds: missing})
	if err != nil {
		return c.wrap("GetArtifactTypesByID", err)
	}
	names := map[int64]string{}
	for _, t := range res.GetArtifactTypes() {
		names[t.GetId()] = t.GetName()
	}
	for i := range out {
		if out[i].Type == "" {
			out[i].Type = names[typeOf[out[i].ID]]
		}
	}
	return nil
}

// TaskOutput returns output name of task in run runID: the run's
// "system.PipelineRun" context, its newest COMPLETE or CACHED execution
// whose task_name is task, and the artifacts of that execution's OUTPUT
// events whose path key is name (more than one for a list of artifacts).
// Errors say what is missing where; a missing run, task or output matches
// pipelines.ErrNotFound; a store that does not answer is an
// *UnreachableError.
func (c *Client) TaskOutput(ctx context.Context, runID, task, name string) ([]Artifact, error) {
	rc, err := c.svc.GetContextByTypeAndName(ctx, &pb.GetContextByTypeAndNameRequest{TypeName: proto.String(RunContextType), ContextName: proto.String(runID)})
	if err != nil {
		return nil, c.wrap("GetContextByTypeAndName", err)
	}
	if rc.GetContext() == nil {
		return nil, fmt.Errorf("ML Metadata at %s has no %s context %q (the run recorded nothing there: is this the ML Metadata of the KFP that ran it?): %w", c.addr, RunContextType, runID, pipelines.ErrNotFound)
	}
	var execs []*pb.Execution
	token := ""
	for {
		res, err := c.svc.GetExecutionsByContext(ctx, &pb.GetExecutionsByContextRequest{ContextId: rc.GetContext().Id,
			Options: &pb.ListOperationOptions{MaxResultSize: proto.Int32(100), NextPageToken: optional(token)}})
		if err != nil {
			return nil, c.wrap("GetExecutionsByContext", err)
		}
		execs = append(execs, res.GetExecutions()...)
		if token = res.GetNextPageToken(); token == "" {
			break
		}
	}
	var mine []*pb.Execution
	var states []string
	for _, e := range execs {
		if e.GetCustomProperties()["task_name"].GetStringValue() != task {
			continue
		}
		states = append(states, e.GetLastKnownState().String())
		if s := e.GetLastKnownState(); s == pb.Execution_COMPLETE || s == pb.Execution_CACHED {
			mine = append(mine, e)
		}
	}
	where := fmt.Sprintf("run context %q in ML Metadata at %s", runID, c.addr)
	if len(mine) == 0 {
		if len(states) == 0 {
			return nil, fmt.Errorf("%s has no execution of task %s: %w", where, task, pipelines.ErrNotFound)
		}
		return nil, fmt.Errorf("%s: task %s has no COMPLETE or CACHED execution (states %s): %w", where, task, strings.Join(states, ", "), pipelines.ErrNotFound)
	}
	sort.Slice(mine, func(i, j int) bool { return mine[i].GetId() > mine[j].GetId() })
	exec := mine[0]
	ev, err := c.svc.GetEventsByExecutionIDs(ctx, &pb.GetEventsByExecutionIDsRequest{ExecutionIds: []int64{exec.GetId()}})
	if err != nil {
		return nil, c.wrap("GetEventsByExecutionIDs", err)
	}
	var ids []int64
	var outputs []string
	for _, e := range ev.GetEvents() {
		if e.GetType() != pb.Event_OUTPUT || len(e.GetPath().GetSteps()) == 0 {
			continue
		}
		key := e.GetPath().GetSteps()[0].GetKey()
		outputs = append(outputs, key)
		if key == name {
			ids = append(ids, e.GetArtifactId())
		}
	}
	if len(ids) == 0 {
		sort.Strings(outputs)
		return nil, fmt.Errorf("%s: execution %d of task %s has no output %q (outputs: %s): %w", where, exec.GetId(), task, name, strings.Join(outputs, ", "), pipelines.ErrNotFound)
	}
	return c.ArtifactsByID(ctx, ids)
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func convert(a *pb.Artifact) Artifact {
	out := Artifact{ID: a.GetId(), Type: a.GetType(), URI: a.GetUri(), Properties: map[string]any{}}
	for k, v := range a.GetCustomProperties() {
		switch x := v.GetValue().(type) {
		case *pb.Value_DoubleValue:
			out.Properties[k] = x.DoubleValue
		case *pb.Value_IntValue:
			out.Properties[k] = x.IntValue
		case *pb.Value_StringValue:
			out.Properties[k] = x.StringValue
		case *pb.Value_StructValue:
			out.Properties[k] = x.StructValue.AsMap()
		}
	}
	return out
}

// ParseID reads an artifact ID as the v2beta1 API writes it (an int64 as a
// decimal string).
func ParseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("artifact ID %q is not a positive integer", s)
	}
	return id, nil
}
