// Package examplecheck holds root-module tests of the djia30 example's files
// that need the root module's dependencies (the KFP IR protos).
package examplecheck

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/kubeflow/pipelines/api/v2alpha1/go/pipelinespec"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

const pipelineFile = "../../../examples/djia30/pipeline.yaml"

// pipelineDocs returns the YAML documents of pipeline.yaml (split at "---"
// lines), which must be two: the PipelineSpec and the PlatformSpec.
func pipelineDocs(t *testing.T) [][]byte {
	t.Helper()
	b, err := os.ReadFile(pipelineFile)
	if err != nil {
		t.Fatal(err)
	}
	var docs [][]byte
	var cur []byte
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if string(bytes.TrimRight(line, " \t\r\n")) == "---" {
			docs, cur = append(docs, cur), nil
			continue
		}
		cur = append(cur, line...)
	}
	docs = append(docs, cur)
	if len(docs) != 2 {
		t.Fatalf("pipeline.yaml has %d YAML documents, want 2 (PipelineSpec, PlatformSpec)", len(docs))
	}
	return docs
}

func yamlToJSON(t *testing.T, doc []byte) []byte {
	t.Helper()
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func loadPipeline(t *testing.T) *pipelinespec.PipelineSpec {
	t.Helper()
	var spec pipelinespec.PipelineSpec
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(yamlToJSON(t, pipelineDocs(t)[0]), &spec); err != nil {
		t.Fatalf("pipeline.yaml document 1 is not a KFP PipelineSpec: %v", err)
	}
	return &spec
}

// TestDJIA30PlatformSpec checks the second document: a KFP PlatformSpec
// whose kubernetes executor configs (kfp-kubernetes' KubernetesExecutorConfig,
// whose proto is not a dependency of this module, so they are checked as
// generic JSON) mount the data and model PVCs where the root parameter
// defaults point.
func TestDJIA30PlatformSpec(t *testing.T) {
	docs := pipelineDocs(t)
	pj := yamlToJSON(t, docs[1])
	var plat pipelinespec.PlatformSpec
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(pj, &plat); err != nil {
		t.Fatalf("pipeline.yaml document 2 is not a KFP PlatformSpec: %v", err)
	}
	if len(plat.GetPlatforms()) != 1 || plat.GetPlatforms()["kubernetes"] == nil {
		t.Fatalf("platforms %v, want only kubernetes", plat.GetPlatforms())
	}

	var doc struct {
		Platforms map[string]struct {
			DeploymentSpec struct {
				Executors map[string]map[string][]map[string]any `json:"executors"`
			} `json:"deploymentSpec"`
		} `json:"platforms"`
	}
	if err := json.Unmarshal(pj, &doc); err != nil {
		t.Fatalf("platform spec: %v", err)
	}
	execs := doc.Platforms["kubernetes"].DeploymentSpec.Executors
	want := map[string][]map[string]any{
		"exec-prepare-data": {{"constant": "djia30-data", "mountPath": "/data"}},
		"exec-train":        {{"constant": "djia30-model", "mountPath": "/models"}},
	}
	if !reflect.DeepEqual(execs, map[string]map[string][]map[string]any{
		"exec-prepare-data": {"pvcMount": want["exec-prepare-data"]},
		"exec-train":        {"pvcMount": want["exec-train"]},
	}) {
		t.Errorf("kubernetes executors %v, want pvcMount %v", execs, want)
	}

	// Every platform executor exists in the PipelineSpec, and the root
	// defaults lie on the mounted volumes.
	spec := loadPipeline(t)
	deployed := spec.GetDeploymentSpec().GetFields()["executors"].GetStructValue().GetFields()
	for label := range execs {
		if deployed[label] == nil {
			t.Errorf("platform executor %s is not in deploymentSpec.executors", label)
		}
	}
	params := spec.GetRoot().GetInputDefinitions().GetParameters()
	for param, mount := range map[string]string{"data_path": "/data", "model_base_path": "/models"} {
		if def := params[param].GetDefaultValue().GetStringValue(); !strings.HasPrefix(def, mount+"/") {
			t.Errorf("default %s %q is not under the mount %s", param, def, mount)
		}
	}
	tasks := spec.GetRoot().GetDag().GetTasks()
	if got := tasks["prepare-data"].GetInputs().GetParameters()["data_path"].GetComponentInputParameter(); got != "data_path" {
		t.Errorf("prepare-data data_path from %q", got)
	}
	if got := tasks["train"].GetInputs().GetParameters()["model_base_path"].GetComponentInputParameter(); got != "model_base_path" {
		t.Errorf("train model_base_path from %q", got)
	}
}

func TestDJIA30PipelineSpec(t *testing.T) {
	spec := loadPipeline(t)
	if spec.GetPipelineInfo().GetName() != "djia30-sentiment" || spec.GetSchemaVersion() != "2.1.0" || spec.GetSdkVersion() != "kfp-2.7.0" {
		t.Errorf("pipelineInfo %v schema %s sdk %s", spec.GetPipelineInfo(), spec.GetSchemaVersion(), spec.GetSdkVersion())
	}
	tasks := spec.GetRoot().GetDag().GetTasks()
	if len(tasks) != 2 || tasks["prepare-data"] == nil || tasks["train"] == nil {
		t.Fatalf("tasks %v", tasks)
	}
	if tasks["prepare-data"].GetComponentRef().GetName() != "comp-prepare-data" || tasks["train"].GetComponentRef().GetName() != "comp-train" {
		t.Error("component refs")
	}
	ds := tasks["train"].GetInputs().GetArtifacts()["dataset"].GetTaskOutputArtifact()
	if ds.GetProducerTask() != "prepare-data" || ds.GetOutputArtifactKey() != "dataset" {
		t.Errorf("train dataset input %v", ds)
	}
	if got := tasks["train"].GetDependentTasks(); len(got) != 1 || got[0] != "prepare-data" {
		t.Errorf("dependent tasks %v", got)
	}
	comps := spec.GetComponents()
	if comps["comp-prepare-data"].GetExecutorLabel() != "exec-prepare-data" || comps["comp-train"].GetExecutorLabel() != "exec-train" {
		t.Error("executor labels")
	}
	if got := comps["comp-prepare-data"].GetOutputDefinitions().GetArtifacts()["dataset"].GetArtifactType().GetSchemaTitle(); got != "system.Dataset" {
		t.Errorf("dataset artifact type %s", got)
	}
	if got := comps["comp-train"].GetOutputDefinitions().GetArtifacts()["metrics"].GetArtifactType().GetSchemaTitle(); got != "system.Metrics" {
		t.Errorf("metrics artifact type %s", got)
	}

	execs := spec.GetDeploymentSpec().GetFields()["executors"].GetStructValue().GetFields()
	for name, want := range map[string][2]string{
		"exec-prepare-data": {"djia30/prepare-data:latest", "/ko-app/prepare-data"},
		"exec-train":        {"djia30/train:latest", "/ko-app/train"},
	} {
		c := execs[name].GetStructValue().GetFields()["container"].GetStructValue().GetFields()
		if c["image"].GetStringValue() != want[0] {
			t.Errorf("%s image %q, want %q", name, c["image"].GetStringValue(), want[0])
		}
		cmd := c["command"].GetListValue().GetValues()
		if len(cmd) != 1 || cmd[0].GetStringValue() != want[1] {
			t.Errorf("%s command %v", name, cmd)
		}
		var args []string
		for _, a := range c["args"].GetListValue().GetValues() {
			args = append(args, a.GetStringValue())
		}
		joined := strings.Join(args, " ")
		switch name {
		case "exec-prepare-data":
			if !strings.Contains(joined, "--data {{$.inputs.parameters['data_path']}}") || !strings.Contains(joined, "--output {{$.outputs.artifacts['dataset'].path}}") {
				t.Errorf("prepare-data args %q", joined)
			}
		case "exec-train":
			if !strings.Contains(joined, "--dataset {{$.inputs.artifacts['dataset'].path}}") || !strings.Contains(joined, "--metrics-out {{$.outputs.artifacts['metrics'].path}}") ||
				!strings.Contains(joined, "--model-version {{$.inputs.parameters['model_version']}}") ||
				!strings.Contains(joined, "--predictions-out {{$.outputs.artifacts['predictions'].path}}") {
				t.Errorf("train args %q", joined)
			}
		}
	}

	params := spec.GetRoot().GetInputDefinitions().GetParameters()
	wantType := map[string]pipelinespec.ParameterType_ParameterTypeEnum{
		"data_path": pipelinespec.ParameterType_STRING, "model_base_path": pipelinespec.ParameterType_STRING,
		"model_version": pipelinespec.ParameterType_NUMBER_INTEGER, "hidden": pipelinespec.ParameterType_STRING,
		"learning_rate": pipelinespec.ParameterType_NUMBER_DOUBLE, "batch_size": pipelinespec.ParameterType_NUMBER_INTEGER,
		"epochs": pipelinespec.ParameterType_NUMBER_INTEGER, "patience": pipelinespec.ParameterType_NUMBER_INTEGER,
		"seed": pipelinespec.ParameterType_NUMBER_INTEGER, "train_end": pipelinespec.ParameterType_STRING,
		"validation_end": pipelinespec.ParameterType_STRING, "gate_split": pipelinespec.ParameterType_STRING,
	}
	if len(params) != len(wantType) {
		t.Errorf("%d root parameters, want %d", len(params), len(wantType))
	}
	for name, typ := range wantType {
		if params[name].GetParameterType() != typ {
			t.Errorf("%s type %v, want %v", name, params[name].GetParameterType(), typ)
		}
	}
	num := func(n string) float64 { return params[n].GetDefaultValue().GetNumberValue() }
	str := func(n string) string { return params[n].GetDefaultValue().GetStringValue() }
	if str("hidden") != "32,16" || num("learning_rate") != 0.001 || num("batch_size") != 256 || num("epochs") != 30 ||
		num("patience") != 5 || num("seed") != 42 || num("model_version") != 1 || str("train_end") != "2015-12-31" ||
		str("validation_end") != "2016-12-31" || str("data_path") == "" || str("model_base_path") == "" || str("gate_split") != "test" {
		t.Errorf("defaults: %v", params)
	}
}
