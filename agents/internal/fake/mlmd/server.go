package mlmd

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	pb "github.com/kubeflow/pipelines/third_party/ml-metadata/go/ml_metadata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Server is the fake MetadataStoreService. Its methods are safe for
// concurrent use.
type Server struct {
	pb.UnimplementedMetadataStoreServiceServer
	// Addr is the listen address, "127.0.0.1:<port>".
	Addr string

	srv *grpc.Server
	lis net.Listener

	mu           sync.Mutex
	seq          int64
	types        map[string]int64 // "artifact/<name>", "execution/<name>", "context/<name>" → ID
	typeNames    map[int64]string
	artifacts    map[int64]*pb.Artifact
	executions   map[int64]*pb.Execution
	contexts     map[int64]*pb.Context
	events       []*pb.Event
	attributions map[int64][]int64 // context → artifacts
	associations map[int64][]int64 // context → executions
	parents      map[int64][]int64 // child context → parents
	calls        []string
	faults       []*fault
}

type fault struct {
	method string
	code   codes.Code
	times  int
}

// New starts a fake on 127.0.0.1 (a free port); stop it with Close.
func New() (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{
		Addr: lis.Addr().String(), lis: lis,
		types: map[string]int64{}, typeNames: map[int64]string{},
		artifacts: map[int64]*pb.Artifact{}, executions: map[int64]*pb.Execution{}, contexts: map[int64]*pb.Context{},
		attributions: map[int64][]int64{}, associations: map[int64][]int64{}, parents: map[int64][]int64{},
	}
	s.srv = grpc.NewServer(grpc.UnaryInterceptor(s.intercept))
	pb.RegisterMetadataStoreServiceServer(s.srv, s)
	go s.srv.Serve(lis)
	return s, nil
}

// Close stops the server; clients then fail with codes.Unavailable.
func (s *Server) Close() { s.srv.Stop() }

// Fail makes the next times calls of method (e.g. "GetContextByTypeAndName",
// "" = every method; times <= 0: every call) answer code.
func (s *Server) Fail(method string, code codes.Code, times int) {
	if times <= 0 {
		times = -1 // every call
	}
	s.mu.Lock()
	s.faults = append(s.faults, &fault{method: method, code: code, times: times})
	s.mu.Unlock()
}

// Calls returns the methods called so far, in order, e.g.
// "GetContextByTypeAndName system.PipelineRun/<run-id>".
func (s *Server) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	s.mu.Lock()
	call := method
	if r, ok := req.(*pb.GetContextByTypeAndNameRequest); ok {
		call += " " + r.GetTypeName() + "/" + r.GetContextName()
	}
	s.calls = append(s.calls, call)
	for _, f := range s.faults {
		if (f.method == "" || f.method == method) && f.times != 0 {
			if f.times > 0 {
				f.times--
			}
			s.mu.Unlock()
			return nil, status.Errorf(f.code, "injected fault on %s", method)
		}
	}
	s.mu.Unlock()
	return next(ctx, req)
}

func (s *Server) id() int64 {
	s.seq++
	return s.seq
}

func now() int64 { return time.Now().UnixMilli() }

// typeID returns the ID of type name of kind, creating it when create.
func (s *Server) typeID(kind, name string, create bool) (int64, bool) {
	if id, ok := s.types[kind+"/"+name]; ok {
		return id, true
	}
	if !create {
		return 0, false
	}
	id := s.id()
	s.types[kind+"/"+name], s.typeNames[id] = id, name
	return id, true
}

func (s *Server) PutArtifactType(_ context.Context, r *pb.PutArtifactTypeRequest) (*pb.PutArtifactTypeResponse, error) {
	if r.GetArtifactType().GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "artifact type name is empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, _ := s.typeID("artifact", r.GetArtifactType().GetName(), true)
	return &pb.PutArtifactTypeResponse{TypeId: proto.Int64(id)}, nil
}

func (s *Server) PutExecutionType(_ context.Context, r *pb.PutExecutionTypeRequest) (*pb.PutExecutionTypeResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, _ := s.typeID("execution", r.GetExecutionType().GetName(), true)
	return &pb.PutExecutionTypeResponse{TypeId: proto.Int64(id)}, nil
}

func (s *Server) PutContextType(_ context.Context, r *pb.PutContextTypeRequest) (*pb.PutContextTypeResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, _ := s.typeID("context", r.GetContextType().GetName(), true)
	return &pb.PutContextTypeResponse{TypeId: proto.Int64(id)}, nil
}

func (s *Server) GetArtifactType(_ context.Context, r *pb.GetArtifactTypeRequest) (*pb.GetArtifactTypeResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.typeID("artifact", r.GetTypeName(), false)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "No type found for query, name: `%s`", r.GetTypeName())
	}
	return &pb.GetArtifactTypeResponse{ArtifactType: &pb.ArtifactType{Id: proto.Int64(id), Name: proto.String(r.GetTypeName())}}, nil
}

func (s *Server) GetArtifactTypesByID(_ context.Context, r *pb.GetArtifactTypesByIDRequest) (*pb.GetArtifactTypesByIDResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &pb.GetArtifactTypesByIDResponse{}
	for _, id := range r.GetTypeIds() {
		if n, ok := s.typeNames[id]; ok && s.types["artifact/"+n] == id {
			out.ArtifactTypes = append(out.ArtifactTypes, &pb.ArtifactType{Id: proto.Int64(id), Name: proto.String(n)})
		}
	}
	return out, nil
}

func (s *Server) GetContextType(_ context.Context, r *pb.GetContextTypeRequest) (*pb.GetContextTypeResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.typeID("context", r.GetTypeName(), false)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "No type found for query, name: `%s`", r.GetTypeName())
	}
	return &pb.GetContextTypeResponse{ContextType: &pb.ContextType{Id: proto.Int64(id), Name: proto.String(r.GetTypeName())}}, nil
}

func (s *Server) GetExecutionType(_ context.Context, r *pb.GetExecutionTypeRequest) (*pb.GetExecutionTypeResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.typeID("execution", r.GetTypeName(), false)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "No type found for query, name: `%s`", r.GetTypeName())
	}
	return &pb.GetExecutionTypeResponse{ExecutionType: &pb.ExecutionType{Id: proto.Int64(id), Name: proto.String(r.GetTypeName())}}, nil
}

// putArtifact stores a (new or updated) artifact and returns its ID.
func (s *Server) putArtifact(a *pb.Artifact) (int64, error) {
	a = proto.Clone(a).(*pb.Artifact)
	name, ok := s.typeNames[a.GetTypeId()]
	if !ok || s.types["artifact/"+name] != a.GetTypeId() {
		return 0, status.Errorf(codes.InvalidArgument, "artifact type_id %d is unknown", a.GetTypeId())
	}
	a.Type = proto.String(name)
	t := now()
	if a.GetId() == 0 {
		a.Id, a.CreateTimeSinceEpoch = proto.Int64(s.id()), proto.Int64(t)
	} else if _, ok := s.artifacts[a.GetId()]; !ok {
		return 0, status.Errorf(codes.NotFound, "artifact %d not found", a.GetId())
	}
	a.LastUpdateTimeSinceEpoch = proto.Int64(t)
	s.artifacts[a.GetId()] = a
	return a.GetId(), nil
}

func (s *Server) PutArtifacts(_ context.Context, r *pb.PutArtifactsRequest) (*pb.PutArtifactsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &pb.PutArtifactsResponse{}
	for _, a := range r.GetArtifacts() {
		id, err := s.putArtifact(a)
		if err != nil {
			return nil, err
		}
		out.ArtifactIds = append(out.ArtifactIds, id)
	}
	return out, nil
}

// putContext stores a context; a new one whose type and name exist is
// ALREADY_EXISTS, as MLMD answers.
func (s *Server) putContext(c *pb.Context) (int64, error) {
	c = proto.Clone(c).(*pb.Context)
	name, ok := s.typeNames[c.GetTypeId()]
	if !ok || s.types["context/"+name] != c.GetTypeId() {
		return 0, status.Errorf(codes.InvalidArgument, "context type_id %d is unknown", c.GetTypeId())
	}
	c.Type = proto.String(name)
	if c.GetId() == 0 {
		for _, x := range s.contexts {
			if x.GetTypeId() == c.GetTypeId() && x.GetName() == c.GetName() {
				return 0, status.Errorf(codes.AlreadyExists, "context %s/%s exists", name, c.GetName())
			}
		}
		c.Id, c.CreateTimeSinceEpoch = proto.Int64(s.id()), proto.Int64(now())
	}
	s.contexts[c.GetId()] = c
	return c.GetId(), nil
}

func (s *Server) PutContexts(_ context.Context, r *pb.PutContextsRequest) (*pb.PutContextsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &pb.PutContextsResponse{}
	for _, c := range r.GetContexts() {
		id, err := s.putContext(c)
		if err != nil {
			return nil, err
		}
		out.ContextIds = append(out.ContextIds, id)
	}
	return out, nil
}

func (s *Server) PutParentContexts(_ context.Context, r *pb.PutParentContextsRequest) (*pb.PutParentContextsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range r.GetParentContexts() {
		s.parents[p.GetChildId()] = append(s.parents[p.GetChildId()], p.GetParentId())
	}
	return &pb.PutParentContextsResponse{}, nil
}

func (s *Server) GetParentContextsByContext(_ context.Context, r *pb.GetParentContextsByContextRequest) (*pb.GetParentContextsByContextResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &pb.GetParentContextsByContextResponse{}
	for _, id := range s.parents[r.GetContextId()] {
		out.Contexts = append(out.Contexts, proto.Clone(s.contexts[id]).(*pb.Context))
	}
	return out, nil
}

func (s *Server) PutExecution(_ context.Context, r *pb.PutExecutionRequest) (*pb.PutExecutionResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := proto.Clone(r.GetExecution()).(*pb.Execution)
	name, ok := s.typeNames[e.GetTypeId()]
	if !ok || s.types["execution/"+name] != e.GetTypeId() {
		return nil, status.Errorf(codes.InvalidArgument, "execution type_id %d is unknown", e.GetTypeId())
	}
	e.Type = proto.String(name)
	t := now()
	if e.GetId() == 0 {
		e.Id, e.CreateTimeSinceEpoch = proto.Int64(s.id()), proto.Int64(t)
	}
	e.LastUpdateTimeSinceEpoch = proto.Int64(t)
	s.executions[e.GetId()] = e
	out := &pb.PutExecutionResponse{ExecutionId: e.Id}
	for _, c := range r.GetContexts() {
		id := c.GetId()
		if id == 0 {
			var err error
			if id, err = s.putContext(c); err != nil {
				return nil, err
			}
		}
		out.ContextIds = append(out.ContextIds, id)
		s.associations[id] = append(s.associations[id], e.GetId())
	}
	for _, p := range r.GetArtifactEventPairs() {
		aid := p.GetEvent().GetArtifactId()
		if p.GetArtifact() != nil {
			var err error
			if aid, err = s.putArtifact(p.GetArtifact()); err != nil {
				return nil, err
			}
		}
		out.ArtifactIds = append(out.ArtifactIds, aid)
		if p.GetEvent() != nil {
			ev := proto.Clone(p.GetEvent()).(*pb.Event)
			ev.ArtifactId, ev.ExecutionId, ev.MillisecondsSinceEpoch = proto.Int64(aid), e.Id, proto.Int64(t)
			s.events = append(s.events, ev)
		}
		for _, cid := range out.ContextIds {
			s.attributions[cid] = append(s.attributions[cid], aid)
		}
	}
	return out, nil
}

func (s *Server) GetArtifactsByID(_ context.Context, r *pb.GetArtifactsByIDRequest) (*pb.GetArtifactsByIDResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &pb.GetArtifactsByIDResponse{}
	for _, id := range r.GetArtifactIds() {
		if a, ok := s.artifacts[id]; ok {
			out.Artifacts = append(out.Artifacts, proto.Clone(a).(*pb.Artifact))
		}
	}
	return out, nil
}

func (s *Server) GetExecutionsByID(_ context.Context, r *pb.GetExecutionsByIDRequest) (*pb.GetExecutionsByIDResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &pb.GetExecutionsByIDResponse{}
	for _, id := range r.GetExecutionIds() {
		if e, ok := s.executions[id]; ok {
			out.Executions = append(out.Executions, proto.Clone(e).(*pb.Execution))
		}
	}
	return out, nil
}

// GetContextByTypeAndName answers an empty response (no error) when there
// is no such context, as MLMD does.
func (s *Server) GetContextByTypeAndName(_ context.Context, r *pb.GetContextByTypeAndNameRequest) (*pb.GetContextByTypeAndNameResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &pb.GetContextByTypeAndNameResponse{Context: s.contextByName(r.GetTypeName(), r.GetContextName())}, nil
}

func (s *Server) contextByName(typeName, name string) *pb.Context {
	tid, ok := s.typeID("context", typeName, false)
	if !ok {
		return nil
	}
	for _, c := range s.contexts {
		if c.GetTypeId() == tid && c.GetName() == name {
			return proto.Clone(c).(*pb.Context)
		}
	}
	return nil
}

// page cuts ids (ascending) by the list options: max_result_size (0 = all)
// and next_page_token (an offset, as decimal).
func page(ids []int64, o *pb.ListOperationOptions) ([]int64, string, error) {
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	off := 0
	if t := o.GetNextPageToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 || n > len(ids) {
			return nil, "", status.Errorf(codes.InvalidArgument, "bad next_page_token %q", t)
		}
		off = n
	}
	size := int(o.GetMaxResultSize())
	if size <= 0 || off+size >= len(ids) {
		return ids[off:], "", nil
	}
	return ids[off : off+size], strconv.Itoa(off + size), nil
}

func (s *Server) GetExecutionsByContext(_ context.Context, r *pb.GetExecutionsByContextRequest) (*pb.GetExecutionsByContextResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids, next, err := page(unique(s.associations[r.GetContextId()]), r.GetOptions())
	if err != nil {
		return nil, err
	}
	out := &pb.GetExecutionsByContextResponse{NextPageToken: proto.String(next)}
	for _, id := range ids {
		out.Executions = append(out.Executions, proto.Clone(s.executions[id]).(*pb.Execution))
	}
	return out, nil
}

func (s *Server) GetArtifactsByContext(_ context.Context, r *pb.GetArtifactsByContextRequest) (*pb.GetArtifactsByContextResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids, next, err := page(unique(s.attributions[r.GetContextId()]), r.GetOptions())
	if err != nil {
		return nil, err
	}
	out := &pb.GetArtifactsByContextResponse{NextPageToken: proto.String(next)}
	for _, id := range ids {
		out.Artifacts = append(out.Artifacts, proto.Clone(s.artifacts[id]).(*pb.Artifact))
	}
	return out, nil
}

func (s *Server) GetEventsByExecutionIDs(_ context.Context, r *pb.GetEventsByExecutionIDsRequest) (*pb.GetEventsByExecutionIDsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[int64]bool{}
	for _, id := range r.GetExecutionIds() {
		want[id] = true
	}
	out := &pb.GetEventsByExecutionIDsResponse{}
	for _, e := range s.events {
		if want[e.GetExecutionId()] {
			out.Events = append(out.Events, proto.Clone(e).(*pb.Event))
		}
	}
	return out, nil
}

func unique(ids []int64) []int64 {
	seen := map[int64]bool{}
	var out []int64
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// Output is one output artifact of one task as KFP's v2 launcher records
// it when the task's executor is done.
type Output struct {
	// Pipeline is the pipeline's name (pipelineInfo.name); RunID the KFP run ID.
	Pipeline, RunID string
	// PipelineRoot is the run's pipeline root, recorded on the run context
	// as custom property pipeline_root.
	PipelineRoot string
	// Task is the task name (custom property task_name of the execution);
	// PodName the pod that ran it.
	Task, PodName string
	// Name is the output's key; Type its schema title ("system.Metrics").
	Name, Type string
	// URI is where the launcher uploaded the output.
	URI string
	// Metadata become the artifact's custom properties (numbers as
	// double_value, strings as string_value), e.g. logged metrics.
	Metadata map[string]any
	// State is the execution's state (default COMPLETE).
	State pb.Execution_State
}

// RecordOutput records o as the launcher does and returns the execution
// and artifact IDs. A second output of the same run and task joins the
// first one's execution.
func (s *Server) RecordOutput(o Output) (executionID, artifactID int64, err error) {
	ctx := context.Background()
	typeID := func(kind, name string) int64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		id, _ := s.typeID(kind, name, true)
		return id
	}
	pipeline, err := s.ensureContext(typeID("context", "system.Pipeline"), o.Pipeline, nil)
	if err != nil {
		return 0, 0, err
	}
	run, err := s.ensureContext(typeID("context", "system.PipelineRun"), o.RunID, map[string]*pb.Value{
		"pipeline_root": {Value: &pb.Value_StringValue{StringValue: o.PipelineRoot}},
	})
	if err != nil {
		return 0, 0, err
	}
	s.mu.Lock()
	if len(s.parents[run.GetId()]) == 0 {
		s.parents[run.GetId()] = []int64{pipeline.GetId()}
	}
	var exec *pb.Execution
	for _, id := range s.associations[run.GetId()] {
		if e := s.executions[id]; e.GetCustomProperties()["task_name"].GetStringValue() == o.Task {
			exec = proto.Clone(e).(*pb.Execution)
		}
	}
	s.mu.Unlock()
	state := o.State
	if state == pb.Execution_UNKNOWN {
		state = pb.Execution_COMPLETE
	}
	if exec == nil {
		exec = &pb.Execution{TypeId: proto.Int64(typeID("execution", "system.ContainerExecution")), CustomProperties: map[string]*pb.Value{
			"task_name":    {Value: &pb.Value_StringValue{StringValue: o.Task}},
			"display_name": {Value: &pb.Value_StringValue{StringValue: o.Task}},
			"pod_name":     {Value: &pb.Value_StringValue{StringValue: o.PodName}},
		}}
	}
	exec.LastKnownState = state.Enum()
	art := &pb.Artifact{TypeId: proto.Int64(typeID("artifact", o.Type)), Uri: proto.String(o.URI), State: pb.Artifact_LIVE.Enum(),
		CustomProperties: map[string]*pb.Value{
			"display_name":       {Value: &pb.Value_StringValue{StringValue: o.Name}},
			"store_session_info": {Value: &pb.Value_StringValue{StringValue: `{"Provider":"minio","Params":{"region":"minio","endpoint":"minio-service.kubeflow:9000","disableSSL":"true","fromEnv":"false","secretName":"mlpipeline-minio-artifact","accessKeyKey":"accesskey","secretKeyKey":"secretkey"}}`}},
		}}
	for k, v := range o.Metadata {
		switch x := v.(type) {
		case float64:
			art.CustomProperties[k] = &pb.Value{Value: &pb.Value_DoubleValue{DoubleValue: x}}
		case int:
			art.CustomProperties[k] = &pb.Value{Value: &pb.Value_DoubleValue{DoubleValue: float64(x)}}
		case string:
			art.CustomProperties[k] = &pb.Value{Value: &pb.Value_StringValue{StringValue: x}}
		default:
			return 0, 0, fmt.Errorf("metadata %s: %T is not a number or a string", k, v)
		}
	}
	res, err := s.PutExecution(ctx, &pb.PutExecutionRequest{Execution: exec, Contexts: []*pb.Context{pipeline, run},
		ArtifactEventPairs: []*pb.PutExecutionRequest_ArtifactAndEvent{{Artifact: art, Event: &pb.Event{Type: pb.Event_OUTPUT.Enum(),
			Path: &pb.Event_Path{Steps: []*pb.Event_Path_Step{{Value: &pb.Event_Path_Step_Key{Key: o.Name}}}}}}}})
	if err != nil {
		return 0, 0, err
	}
	return res.GetExecutionId(), res.GetArtifactIds()[0], nil
}

func (s *Server) ensureContext(typeID int64, name string, props map[string]*pb.Value) (*pb.Context, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.contexts {
		if c.GetTypeId() == typeID && c.GetName() == name {
			return proto.Clone(c).(*pb.Context), nil
		}
	}
	id, err := s.putContext(&pb.Context{TypeId: proto.Int64(typeID), Name: proto.String(name), CustomProperties: props})
	if err != nil {
		return nil, err
	}
	return proto.Clone(s.contexts[id]).(*pb.Context), nil
}
