// Package examplecheck holds root-module tests of the djia30 example's files
// that need the root module's dependencies (the KFP IR protos).
package examplecheck

import (
	"os"
	"strings"
	"testing"

	"github.com/kubeflow/pipelines/api/v2alpha1/go/pipelinespec"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

func loadPipeline(t *testing.T) *pipelinespec.PipelineSpec {
	t.Helper()
	b, err := os.ReadFile("../../../examples/djia30/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	var spec pipelinespec.PipelineSpec
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(j, &spec); err != nil {
		t.Fatalf("pipeline.yaml is not a KFP PipelineSpec: %v", err)
	}
	return &spec
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
				!strings.Contains(joined, "--model-version {{$.inputs.parameters['model_version']}}") {
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
		"validation_end": pipelinespec.ParameterType_STRING,
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
		str("validation_end") != "2016-12-31" || str("data_path") == "" || str("model_base_path") == "" {
		t.Errorf("defaults: %v", params)
	}
}
