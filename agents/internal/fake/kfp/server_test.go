package kfp

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/go-openapi/strfmt"
	"github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/pipeline_model"
	"github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/run_model"
)

// get decodes a GET answer into v strictly (unknown fields are errors).
func get(t *testing.T, url string, v any) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v\n%s", url, err, body)
	}
	return res.StatusCode
}

// The fake's answers decode strictly into the models generated from the
// v2beta1 swagger, and pass their validation.
func TestShapesFollowSwagger(t *testing.T) {
	s := New()
	defer s.Close()
	pid := s.AddPipeline("p", "ns")
	vid := s.AddVersion(pid, "v1", "d", []byte("root:\n  dag:\n    tasks:\n      a: {}\n---\nplatforms: {kubernetes: {}}\n"))
	var pl pipeline_model.V2beta1ListPipelinesResponse
	if code := get(t, s.URL+"/apis/v2beta1/pipelines?namespace=ns", &pl); code != 200 || len(pl.Pipelines) != 1 || pl.Pipelines[0].PipelineID != pid || pl.TotalSize != 1 {
		t.Fatalf("list pipelines: %d %+v", code, pl)
	}
	var vl pipeline_model.V2beta1ListPipelineVersionsResponse
	get(t, s.URL+"/apis/v2beta1/pipelines/"+pid+"/versions", &vl)
	if len(vl.PipelineVersions) != 1 || vl.PipelineVersions[0].PipelineVersionID != vid {
		t.Fatalf("versions %+v", vl)
	}
	spec, _ := json.Marshal(vl.PipelineVersions[0].PipelineSpec)
	if string(spec) != `{"pipeline_spec":{"root":{"dag":{"tasks":{"a":{}}}}},"platform_spec":{"platforms":{"kubernetes":{}}}}` {
		t.Errorf("pipeline_spec = %s", spec)
	}
	for _, m := range []interface{ Validate(strfmt.Registry) error }{&pl, &vl} {
		if err := m.Validate(strfmt.Default); err != nil {
			t.Error(err)
		}
	}
	var st pipeline_model.GooglerpcStatus
	if code := get(t, s.URL+"/apis/v2beta1/pipelines/nope", &st); code != 404 || st.Code != 5 {
		t.Errorf("404: %d %+v", code, st)
	}
	res, _ := http.Post(s.URL+"/apis/v2beta1/runs", "application/json", strings.NewReader(`{"display_name":"r","pipeline_version_reference":{"pipeline_id":"`+pid+`","pipeline_version_id":"`+vid+`"},"runtime_config":{"pipeline_root":"minio://mlpipeline/v2/artifacts","parameters":{"l":[1,2],"s":{"k":"v"}}}}`))
	var run run_model.V2beta1Run
	json.NewDecoder(res.Body).Decode(&run)
	res.Body.Close()
	s.SetTaskOutputs(run.RunID, "a", "metrics", "17")
	var got run_model.V2beta1Run
	get(t, s.URL+"/apis/v2beta1/runs/"+run.RunID, &got)
	if td := got.RunDetails.TaskDetails[0]; len(td.Outputs["metrics"].ArtifactIds) != 1 || td.Outputs["metrics"].ArtifactIds[0] != "17" ||
		got.RuntimeConfig.PipelineRoot != "minio://mlpipeline/v2/artifacts" || len(got.RuntimeConfig.Parameters["l"].([]any)) != 2 {
		t.Errorf("task outputs / runtime config: %+v %+v", td, got.RuntimeConfig)
	}
	if got.State != "RUNNING" || len(got.RunDetails.TaskDetails) != 1 || got.RunDetails.TaskDetails[0].DisplayName != "a" {
		t.Errorf("run = %+v", got)
	}
	if err := got.Validate(strfmt.Default); err != nil {
		t.Error(err)
	}
	want := []string{"GET /apis/v2beta1/pipelines?namespace=ns", "GET /apis/v2beta1/pipelines/" + pid + "/versions", "GET /apis/v2beta1/pipelines/nope", "POST /apis/v2beta1/runs", "GET /apis/v2beta1/runs/" + run.RunID}
	if strings.Join(s.Calls(), "\n") != strings.Join(want, "\n") {
		t.Errorf("calls %v", s.Calls())
	}
}

func TestOnCountsAcrossRequests(t *testing.T) {
	s := New()
	defer s.Close()
	s.Inject(On("GET", "/healthz$", 2, Unavailable()))
	var codes []int
	for i := 0; i < 3; i++ {
		res, err := http.Get(s.URL + "/apis/v2beta1/healthz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		codes = append(codes, res.StatusCode)
	}
	if codes[0] != 503 || codes[1] != 503 || codes[2] != 200 {
		t.Errorf("codes = %v", codes)
	}
}
