package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "branchml.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const base = `apiVersion: branchml.dev/v1
project: demo
branches: {build: build-components, pipeline: kf-pipeline, train: training, deploy: deploy-model}
`

func TestLoadExample(t *testing.T) {
	cfg, err := Load("../../examples/djia30/branchml.yaml", WithEnviron(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Project != "djia30" || cfg.Pipeline.Name != "djia30-sentiment" || cfg.Training.Data.Volume != "djia30-data" {
		t.Errorf("project/pipeline/volume = %q %q %q", cfg.Project, cfg.Pipeline.Name, cfg.Training.Data.Volume)
	}
	if got := cfg.Components[1]; got.Name != "train" || got.Binary != "/ko-app/train" || got.Image != "djia30/train" {
		t.Errorf("components[1] = %+v", got)
	}
	if !reflect.DeepEqual(cfg.Deploy.Canary.Steps, []int{10, 25, 50, 100}) || cfg.Deploy.Canary.Interval.Duration != 2*time.Second {
		t.Errorf("canary = %+v", cfg.Deploy.Canary)
	}
	if cfg.Pipeline.Resources["train"].Memory != "2Gi" {
		t.Errorf("train resources = %+v", cfg.Pipeline.Resources["train"])
	}
	if k := cfg.Training.KPIs; len(k) != 4 || k[0].Metric != "auc" || k[0].Baseline != "same_as_today" || k[0].Margin != 0.02 || k[0].Op != "" || !k[3].Champion {
		t.Errorf("kpis = %+v", cfg.Training.KPIs)
	}
	g := cfg.Training.Gate
	if g.Split != "test" || g.Parameter != "gate_split" || g.Block != "date" || g.BlockLength != 5 || g.Confidence != 0.95 || g.Resamples != 2000 || g.Seed != 1 ||
		g.Label != "label" || g.Score != "model" || g.Predictions != (ArtifactRef{Task: "train", Artifact: "predictions"}) || !reflect.DeepEqual(g.Key, []string{"date", "ticker"}) {
		t.Errorf("gate = %+v", g)
	}
}

// A KPI with confidence needs the gate split; the schema tells the two
// forms of KPI apart by op.
func TestGateKPIsNeedASplit(t *testing.T) {
	dir := t.TempDir()
	base := "apiVersion: branchml.dev/v1\nproject: p\nbranches: {build: b, pipeline: p, train: t, deploy: d}\ntraining:\n"
	for _, c := range []struct{ kpis, want string }{
		{"  kpis: [{metric: auc, champion: true}]\n", "training.kpis[0]"},
		{"  gate: {split: test}\n  kpis: [{metric: f1, champion: true}]\n", "training.kpis[0]"},
		{"  gate: {split: test}\n  kpis: [{metric: auc, op: '>', champion: true}]\n", "training.kpis[0]"},
	} {
		p := filepath.Join(dir, "b.yaml")
		if err := os.WriteFile(p, []byte(base+c.kpis), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(p, WithEnviron(nil)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want one naming %s", c.kpis, err, c.want)
		}
	}
	p := filepath.Join(dir, "ok.yaml")
	os.WriteFile(p, []byte(base+"  gate: {split: test}\n  kpis: [{metric: auc, champion: true, margin: 0.01}, {metric: test.rows, op: '>=', value: 10}]\n"), 0o644)
	if cfg, err := Load(p, WithEnviron(nil)); err != nil || cfg.Training.KPIs[0].Margin != 0.01 || cfg.Training.KPIs[1].Op != ">=" {
		t.Errorf("valid gate: %v", err)
	}
}

func TestDefaultsAndDerived(t *testing.T) {
	cfg, err := Load("testdata/minimal.yaml", WithEnviron(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"pipeline.name":         "demo",
		"pipeline.spec":         "pipeline.yaml",
		"training.experiment":   "demo",
		"training.data.volume":  "demo-data",
		"training.model.volume": "demo-model",
		"deploy.model":          "demo",
		"deploy.strategy":       "canary",
		"backends.forge.type":   "local",
		"snapshot.class":        "trident-snapshotclass",
	}
	got := map[string]any{
		"pipeline.name":         cfg.Pipeline.Name,
		"pipeline.spec":         cfg.Pipeline.Spec,
		"training.experiment":   cfg.Training.Experiment,
		"training.data.volume":  cfg.Training.Data.Volume,
		"training.model.volume": cfg.Training.Model.Volume,
		"deploy.model":          cfg.Deploy.Model,
		"deploy.strategy":       cfg.Deploy.Strategy,
		"backends.forge.type":   cfg.Backends.Forge.Type,
		"snapshot.class":        cfg.Snapshot.Class,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if cfg.Training.Timeout.Duration != 2*time.Hour || cfg.Deploy.Canary.MaxLatencyP99.Duration != 500*time.Millisecond {
		t.Errorf("durations: %v %v", cfg.Training.Timeout, cfg.Deploy.Canary.MaxLatencyP99)
	}
	if cfg.Dir != "testdata" || cfg.Path("pipeline.yaml") != filepath.Join("testdata", "pipeline.yaml") {
		t.Errorf("dir %q", cfg.Dir)
	}
}

// Layering: defaults < file < BRANCHML_* environment < --set.
func TestLayering(t *testing.T) {
	p := write(t, base+"deploy:\n  strategy: ab\n  canary: {steps: [5, 100]}\n")
	env := []string{
		"BRANCHML_DEPLOY_STRATEGY=canary",
		"BRANCHML_BACKENDS_PIPELINES_ENDPOINT=https://kfp.example.com",
		"BRANCHML_BACKENDS_PIPELINES_TYPE=kfp",
		"BRANCHML_DRY_RUN=true", // an agent flag, not a config field: ignored here
		"BRANCHML_DEPLOY_CANARY_STEPS=[20, 40, 100]",
	}
	cfg, err := Load(p, WithEnviron(env), WithSets("backends.pipelines.type=local", "snapshot.keep=3"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Deploy.Strategy != "canary" {
		t.Errorf("env did not override the file: %q", cfg.Deploy.Strategy)
	}
	if !reflect.DeepEqual(cfg.Deploy.Canary.Steps, []int{20, 40, 100}) {
		t.Errorf("steps %v", cfg.Deploy.Canary.Steps)
	}
	if cfg.Backends.Pipelines.Endpoint != "https://kfp.example.com" || cfg.Backends.Pipelines.Type != "local" {
		t.Errorf("pipelines %+v", cfg.Backends.Pipelines)
	}
	if cfg.Snapshot.Keep != 3 || cfg.Deploy.Canary.Interval.Duration != time.Minute {
		t.Errorf("keep %d interval %v", cfg.Snapshot.Keep, cfg.Deploy.Canary.Interval)
	}
}

func fieldErrors(t *testing.T, err error) []string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %T %v", err, err)
	}
	var out []string
	for _, e := range ve.Errors {
		out = append(out, e.Error())
	}
	return out
}

func TestInvalid(t *testing.T) {
	cases := []struct {
		name, body string
		env        []string
		want       []string
	}{
		{"unknown key", base + "trainig: {}\n", nil,
			[]string{`branchml.yaml: additional properties 'trainig' not allowed (unknown key: remove it or fix its spelling; see resources/schema/branchml.schema.json)`}},
		{"unknown nested key", base + "deploy:\n  canary:\n    weight: 5\n", nil,
			[]string{`branchml.yaml: deploy.canary: additional properties 'weight' not allowed (unknown key: remove it or fix its spelling; see resources/schema/branchml.schema.json)`}},
		{"wrong type", base + "snapshot:\n  keep: ten\n", nil,
			[]string{`branchml.yaml: snapshot.keep: "ten": got string, want integer`}},
		{"negative canary weight", base + "deploy:\n  canary:\n    steps: [-10, 50, 100]\n", nil,
			[]string{`branchml.yaml: deploy.canary.steps[0]: -10: minimum: got -10, want 1`}},
		{"missing branch mapping", "apiVersion: branchml.dev/v1\nproject: demo\nbranches: {build: b, pipeline: p, train: t}\n", nil,
			[]string{`branchml.yaml: branches: missing property 'deploy'`}},
		{"no branches at all", "apiVersion: branchml.dev/v1\nproject: demo\n", nil,
			[]string{`branchml.yaml: missing property 'branches'`}},
		{"descending steps", base + "deploy:\n  canary:\n    steps: [50, 25]\n", nil,
			[]string{`branchml.yaml: deploy.canary.steps[1]: 25: canary weights must ascend; it follows 50`}},
		{"kubernetes steps the replicas cannot express", base + "deploy:\n  canary:\n    steps: [10, 25, 50, 100]\n  serving:\n    replicas: 4\nbackends:\n  serving:\n    type: kubernetes\n", nil,
			[]string{`branchml.yaml: deploy.canary.steps[0]: 10: backends.serving.type kubernetes splits traffic by pods: 10% of deploy.serving.replicas 4 is not a whole pod (the canary would get 25%); use weights that are multiples of 25%, or more replicas`}},
		{"kubernetes steps with too few replicas", base + "deploy:\n  canary:\n    steps: [25, 50, 100]\n  serving:\n    replicas: 2\nbackends:\n  serving:\n    type: kubernetes\n", nil,
			[]string{`branchml.yaml: deploy.canary.steps[0]: 25: backends.serving.type kubernetes splits traffic by pods: 25% of deploy.serving.replicas 2 is not a whole pod (the canary would get 50%); use weights that are multiples of 50%, or more replicas`}},
		{"kubernetes A/B weight the replicas cannot express", base + "deploy:\n  strategy: ab\n  canary:\n    steps: [50, 100]\n  ab:\n    weight: 30\n  serving:\n    replicas: 4\nbackends:\n  serving:\n    type: kubernetes\n", nil,
			[]string{`branchml.yaml: deploy.ab.weight: 30: backends.serving.type kubernetes splits traffic by pods: 30% of deploy.serving.replicas 4 is not a whole pod (the canary would get 50%); use weights that are multiples of 25%, or more replicas`}},
		{"autoscale without a CPU request", base + "deploy:\n  canary:\n    steps: [10, 25, 100]\n  serving:\n    autoscale: {maxReplicas: 6, targetCPUUtilizationPercentage: 60}\nbackends:\n  serving:\n    type: kubernetes\n", nil,
			[]string{`branchml.yaml: deploy.serving.resources.requests.cpu: is required with deploy.serving.autoscale: the HorizontalPodAutoscaler's CPU target is a percentage of the request (e.g. cpu: 100m)`}},
		{"autoscale with a zero CPU request in another unit", base + "deploy:\n  serving:\n    resources: {requests: {cpu: 0k}}\n    autoscale: {maxReplicas: 6, targetCPUUtilizationPercentage: 60}\n", nil,
			[]string{`branchml.yaml: deploy.serving.resources.requests.cpu: "0k": must be above zero with deploy.serving.autoscale: the HorizontalPodAutoscaler's CPU target is a percentage of the request (e.g. cpu: 100m)`}},
		{"autoscale with a zero CPU limit and no request", base + "deploy:\n  serving:\n    resources: {limits: {cpu: '0'}}\n    autoscale: {maxReplicas: 6, targetCPUUtilizationPercentage: 60}\n", nil,
			[]string{`branchml.yaml: deploy.serving.resources.limits.cpu: "0": must be above zero with deploy.serving.autoscale: the HorizontalPodAutoscaler's CPU target is a percentage of the request (e.g. cpu: 100m)`}},
		{"request above its limit", base + "deploy:\n  serving:\n    resources: {requests: {cpu: '1', memory: 1Gi}, limits: {cpu: 500m, memory: 2Gi}}\n", nil,
			[]string{`branchml.yaml: deploy.serving.resources.requests.cpu: "1": is above limits.cpu 500m, which Kubernetes refuses; lower the request or raise the limit`}},
		{"unknown resource name", base + "deploy:\n  serving:\n    resources: {requests: {gpu: '1'}}\n", nil,
			[]string{`branchml.yaml: deploy.serving.resources.requests: additional properties 'gpu' not allowed (unknown key: remove it or fix its spelling; see resources/schema/branchml.schema.json)`}},
		{"autoscale with a zero CPU request, on the local backend too", base + "deploy:\n  serving:\n    resources: {requests: {cpu: 0m}}\n    autoscale: {maxReplicas: 6, targetCPUUtilizationPercentage: 60}\n", nil,
			[]string{`branchml.yaml: deploy.serving.resources.requests.cpu: "0m": must be above zero with deploy.serving.autoscale: the HorizontalPodAutoscaler's CPU target is a percentage of the request (e.g. cpu: 100m)`}},
		{"autoscale min above max", base + "deploy:\n  serving:\n    resources: {requests: {cpu: 100m}}\n    autoscale: {minReplicas: 7, maxReplicas: 6, targetCPUUtilizationPercentage: 60}\nbackends:\n  serving:\n    type: kubernetes\n", nil,
			[]string{`branchml.yaml: deploy.serving.autoscale.minReplicas: 7: is above maxReplicas 6; set minReplicas <= maxReplicas`}},
		{"autoscale without a target", base + "deploy:\n  serving:\n    resources: {requests: {cpu: 100m}}\n    autoscale: {maxReplicas: 6}\n", nil,
			[]string{`branchml.yaml: deploy.serving.autoscale: missing property 'targetCPUUtilizationPercentage'`}},
		{"resource that is no quantity", base + "deploy:\n  serving:\n    resources: {requests: {cpu: one}}\n", nil,
			[]string{`branchml.yaml: deploy.serving.resources.requests.cpu: "one": is not a Kubernetes quantity: write e.g. 500m, 2, 512Mi or 1Gi`}},
		{"bad env value names the variable", base, []string{"BRANCHML_SNAPSHOT_KEEP=-1"},
			[]string{`BRANCHML_SNAPSHOT_KEEP: snapshot.keep: -1: minimum: got -1, want 1`}},
		{"bad duration", base + "training:\n  timeout: 10 minutes\n", nil,
			[]string{`branchml.yaml: training.timeout: "10 minutes": is not a duration: write a Go duration such as 30s, 5m or 1h30m`}},
		{"empty file", "", nil,
			[]string{`branchml.yaml: the file is empty; it needs at least apiVersion, project and branches`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := write(t, c.body)
			_, err := Load(p, WithEnviron(c.env))
			got := fieldErrors(t, err)
			for i := range got {
				got[i] = strings.ReplaceAll(got[i], p, "branchml.yaml")
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, c.want)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("want ErrNotExist, got %v", err)
	}
}

func TestStagesForBranch(t *testing.T) {
	cfg, err := Load("testdata/single-branch.yaml", WithEnviron(nil))
	if err != nil {
		t.Fatal(err)
	}
	for branch, want := range map[string][]string{
		"main":         {"build", "pipeline", "train"},
		"deploy-model": {"deploy"},
		"ds1":          nil,
	} {
		if got := cfg.StagesForBranch(branch); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, want %v", branch, got, want)
		}
	}
}

// A CPU limit alone is the request (Kubernetes defaults a request to its
// limit): autoscale is accepted with it.
func TestAutoscaleWithALimitOnly(t *testing.T) {
	p := write(t, base+"deploy:\n  serving:\n    resources: {limits: {cpu: 200m}}\n    autoscale: {maxReplicas: 4, targetCPUUtilizationPercentage: 60}\nbackends:\n  serving:\n    type: kubernetes\n")
	cfg, err := Load(p, WithEnviron([]string{"BRANCHML_DEPLOY_SERVING_AUTOSCALE_TARGET_CPU_UTILIZATION_PERCENTAGE=70"}))
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Deploy.Serving.Autoscale; a == nil || a.MaxReplicas != 4 || a.TargetCPUUtilizationPercentage != 70 || cfg.Deploy.Serving.Resources.Limits["cpu"] != "200m" {
		t.Fatalf("autoscale %+v, resources %+v", a, cfg.Deploy.Serving.Resources)
	}
}

func TestEnvNameWords(t *testing.T) {
	for in, want := range map[string]string{"targetCPUUtilizationPercentage": "BRANCHML_TARGET_CPU_UTILIZATION_PERCENTAGE",
		"apiURL": "BRANCHML_API_URL", "userIDs": "BRANCHML_USER_IDS", "maxLatencyP99": "BRANCHML_MAX_LATENCY_P99", "stallTimeout": "BRANCHML_STALL_TIMEOUT"} {
		if got := envName([]string{in}); got != want {
			t.Errorf("envName(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestEnvVarNames(t *testing.T) {
	names := map[string]string{}
	for _, kv := range EnvVars() {
		names[kv[0]] = kv[1]
	}
	for env, path := range map[string]string{
		"BRANCHML_BACKENDS_PIPELINES_ENDPOINT":             "backends.pipelines.endpoint",
		"BRANCHML_BACKENDS_PIPELINES_INSECURE_SKIP_VERIFY": "backends.pipelines.insecureSkipVerify",
		"BRANCHML_BACKENDS_FORGE_API_URL":                  "backends.forge.apiURL",
		"BRANCHML_TRAINING_STALL_TIMEOUT":                  "training.stallTimeout",
		"BRANCHML_PROJECT":                                 "project",
		// An acronym before a word ends a word of its own.
		"BRANCHML_DEPLOY_SERVING_AUTOSCALE_TARGET_CPU_UTILIZATION_PERCENTAGE": "deploy.serving.autoscale.targetCPUUtilizationPercentage",
		"BRANCHML_DEPLOY_SERVING_AUTOSCALE_MAX_REPLICAS":                      "deploy.serving.autoscale.maxReplicas",
		"BRANCHML_DEPLOY_CANARY_MAX_LATENCY_P99":                              "deploy.canary.maxLatencyP99",
	} {
		if names[env] != path {
			t.Errorf("%s -> %q, want %q", env, names[env], path)
		}
	}
}

func FuzzLoad(f *testing.F) {
	for _, s := range []string{base, base + "deploy: {canary: {steps: [1, 2]}}", "a: [", "- 1\n- 2", "apiVersion: 1"} {
		f.Add([]byte(s))
	}
	if raw, err := os.ReadFile("../../examples/djia30/branchml.yaml"); err == nil {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "b.yaml")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(p, WithEnviron(nil))
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) == 0 {
				t.Fatalf("error is not a ValidationError with fields: %T %v", err, err)
			}
			return
		}
		if cfg.Project == "" || len(cfg.Branches) != 4 {
			t.Fatalf("valid config without project or branches: %+v", cfg)
		}
	})
}

func TestStrictYAML(t *testing.T) {
	for name, body := range map[string]string{
		"duplicate key":  base + "project: other\n",
		"extra document": base + "---\nbogus: 1\n",
	} {
		p := write(t, body)
		_, err := Load(p, WithEnviron(nil))
		got := fieldErrors(t, err)
		if len(got) != 1 {
			t.Fatalf("%s: %q", name, got)
		}
		if name == "duplicate key" && !strings.Contains(got[0], `not valid YAML`) || name == "extra document" && !strings.Contains(got[0], "more than one YAML document") {
			t.Errorf("%s: %q", name, got)
		}
	}
	// A leading document marker is fine.
	if _, err := Load(write(t, "---\n"+base), WithEnviron(nil)); err != nil {
		t.Error(err)
	}
}

// Values from the environment and --set take the schema's type: strings
// stay strings ("0123", "on"), lists and numbers are parsed.
func TestTypedOverrides(t *testing.T) {
	p := write(t, base)
	cfg, err := Load(p, WithEnviron([]string{
		"BRANCHML_PROJECT=0123",
		"BRANCHML_TRAINING_PARAMETERS_EPOCHS=3",
		"BRANCHML_TRAINING_PARAMETERS_HIDDEN=16",
	}), WithSets("pipeline.name=on", "deploy.canary.steps=[5, 100]", "training.parameters.seed=7"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Project != "0123" || cfg.Pipeline.Name != "on" || !reflect.DeepEqual(cfg.Deploy.Canary.Steps, []int{5, 100}) {
		t.Errorf("project %q pipeline %q steps %v", cfg.Project, cfg.Pipeline.Name, cfg.Deploy.Canary.Steps)
	}
	params := map[string]any{}
	for k, v := range cfg.Training.Parameters {
		params[k] = fmt.Sprint(v)
	}
	if !reflect.DeepEqual(params, map[string]any{"epochs": "3", "hidden": "16", "seed": "7"}) {
		t.Errorf("parameters %v", params)
	}
}

func TestUnknownEnv(t *testing.T) {
	got := UnknownEnv([]string{
		"BRANCHML_BACKENDS_PIPELINE_ENDPOINT=x", // typo: PIPELINES
		"BRANCHML_BACKENDS_PIPELINES_ENDPOINT=x",
		"BRANCHML_DRY_RUN=1",
		"BRANCHML_TRAINING_PARAMETERS_EPOCHS=3",
		"HOME=/root",
	}, map[string]bool{"BRANCHML_DRY_RUN": true})
	if !reflect.DeepEqual(got, []string{"BRANCHML_BACKENDS_PIPELINE_ENDPOINT"}) {
		t.Errorf("UnknownEnv = %v", got)
	}
}

// A YAML merge key followed by an override of a merged key is valid YAML
// (the mapping's own key wins); a key given twice in one mapping is not,
// also beside a merge key and inside a merged anchor.
func TestMergeKeys(t *testing.T) {
	p := write(t, base+`pipeline:
  resources:
    prepare-data: &res
      cpu: "1"
      memory: 1Gi
    train:
      <<: *res
      cpu: "2"
`)
	cfg, err := Load(p, WithEnviron(nil))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Pipeline.Resources["train"]
	if got.CPU != "2" || got.Memory != "1Gi" || cfg.Pipeline.Resources["prepare-data"].CPU != "1" {
		t.Fatalf("resources = %+v", cfg.Pipeline.Resources)
	}
	for name, body := range map[string]string{
		"twice beside a merge key": base + "pipeline:\n  resources:\n    a: &r {cpu: \"1\"}\n    b:\n      <<: *r\n      cpu: \"2\"\n      cpu: \"3\"\n",
		"twice in the anchor":      base + "pipeline:\n  resources:\n    a: &r\n      cpu: \"1\"\n      cpu: \"2\"\n    b: {<<: *r}\n",
		"twice at the top":         base + "project: other\n",
	} {
		got := fieldErrors(t, func() error { _, err := Load(write(t, body), WithEnviron(nil)); return err }())
		if len(got) != 1 || !strings.Contains(got[0], "is given twice") {
			t.Errorf("%s: %q", name, got)
		}
	}
}

// A huge branchml.yaml is refused before it is parsed.
func TestConfigSizeBound(t *testing.T) {
	p := write(t, base+"description: "+strings.Repeat("x", MaxConfigBytes)+"\n")
	_, err := Load(p, WithEnviron(nil))
	got := fieldErrors(t, err)
	if len(got) != 1 || !strings.Contains(got[0], "is larger than 1 MiB, the limit for this input") {
		t.Fatalf("%q", got)
	}
}
