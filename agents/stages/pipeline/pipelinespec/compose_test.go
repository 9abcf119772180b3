package pipelinespec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/records"
)

const (
	digestPrep  = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	digestTrain = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

func testLock() *records.ComponentsLock {
	return &records.ComponentsLock{
		APIVersion: records.APIVersion, Kind: "ComponentsLock", SourceCommit: "abc123", Registry: "127.0.0.1:5000",
		Components: map[string]records.LockedComponent{
			"prepare-data": {Repository: "djia30/prepare-data", Image: "127.0.0.1:5000/djia30/prepare-data@" + digestPrep, Digest: digestPrep},
			"train":        {Repository: "djia30/train", Image: "127.0.0.1:5000/djia30/train@" + digestTrain, Digest: digestTrain},
		},
	}
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var testResources = map[string]config.Resources{
	"prepare-data": {CPU: "500m", Memory: "1Gi"},
	"train":        {CPU: "2", Memory: "2G", Accelerator: &config.Accelerator{Type: "nvidia.com/gpu", Count: 1}},
}

func TestComposePinsImagesAndResources(t *testing.T) {
	c, err := Compose(readTestdata(t, "small.yaml"), testLock(), testResources)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"exec-prepare-data": "127.0.0.1:5000/djia30/prepare-data@" + digestPrep,
		"exec-train":        "127.0.0.1:5000/djia30/train@" + digestTrain,
	}
	if len(c.Images) != 2 || c.Images["exec-prepare-data"] != want["exec-prepare-data"] || c.Images["exec-train"] != want["exec-train"] {
		t.Errorf("Images = %v, want %v", c.Images, want)
	}
	if c.Name != "small" {
		t.Errorf("Name = %q", c.Name)
	}
	execs := c.Deployment.GetExecutors()
	if got := execs["exec-train"].GetContainer().GetImage(); got != want["exec-train"] {
		t.Errorf("proto image = %q", got)
	}
	r := execs["exec-train"].GetContainer().GetResources()
	if r.GetCpuLimit() != 2 || r.GetCpuRequest() != 2 || r.GetMemoryLimit() != 2 || r.GetMemoryRequest() != 2 {
		t.Errorf("train resources = %v", r)
	}
	if r.GetAccelerator().GetType() != "nvidia.com/gpu" || r.GetAccelerator().GetCount() != 1 {
		t.Errorf("train accelerator = %v", r.GetAccelerator())
	}
	p := execs["exec-prepare-data"].GetContainer().GetResources()
	if p.GetCpuLimit() != 0.5 || p.GetMemoryLimit() != 1.073741824 {
		t.Errorf("prepare-data resources = %v", p)
	}
	y := string(c.YAML)
	for _, s := range []string{
		"      container:\n        args:\n        - --data-path\n        - '{{$.inputs.parameters[''data_path'']}}'\n",
		"        image: 127.0.0.1:5000/djia30/train@" + digestTrain + "\n",
		"          resourceCpuLimit: '2'\n",
		"          resourceMemoryLimit: 1Gi\n",
		"          memoryLimit: 1.073741824\n",
		"          accelerator:\n            count: '1'\n            resourceCount: '1'\n            resourceType: nvidia.com/gpu\n            type: nvidia.com/gpu\n",
	} {
		if !strings.Contains(y, s) {
			t.Errorf("composed YAML lacks %q:\n%s", s, y)
		}
	}
	if strings.Contains(y, ":latest") || strings.Contains(y, "image: djia30/train\n") {
		t.Errorf("unpinned image left:\n%s", y)
	}
}

func TestComposeIsDeterministicAndIdempotent(t *testing.T) {
	spec := readTestdata(t, "small.yaml")
	a, err := Compose(spec, testLock(), testResources)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compose(spec, testLock(), testResources)
	if err != nil {
		t.Fatal(err)
	}
	if a.Hash != b.Hash || string(a.YAML) != string(b.YAML) {
		t.Fatalf("two composes differ: %s vs %s", a.Hash, b.Hash)
	}
	if !strings.HasPrefix(a.Hash, "sha256:") || len(a.Hash) != len("sha256:")+64 {
		t.Errorf("Hash = %q", a.Hash)
	}
	// Composing the composed spec again changes nothing.
	c, err := Compose(a.YAML, testLock(), testResources)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hash != a.Hash {
		t.Errorf("recompose hash %s != %s", c.Hash, a.Hash)
	}
	// A different digest gives a different hash.
	l := testLock()
	lc := l.Components["train"]
	lc.Image = "127.0.0.1:5000/djia30/train@sha256:3333333333333333333333333333333333333333333333333333333333333333"
	l.Components["train"] = lc
	d, err := Compose(spec, l, testResources)
	if err != nil {
		t.Fatal(err)
	}
	if d.Hash == a.Hash {
		t.Error("hash ignores the pinned digest")
	}
}

func TestComposeKeepsPlatformSpec(t *testing.T) {
	c, err := Compose(readTestdata(t, "platform.yaml"), testLock(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Platform == nil {
		t.Fatal("platform spec lost")
	}
	y := string(c.YAML)
	if !strings.Contains(y, "\n---\nplatforms:\n  kubernetes:\n    deploymentSpec:\n      executors:\n        exec-train:\n          pvcMount:\n          - constant: djia30-data\n            mountPath: /data\n") {
		t.Errorf("composed YAML:\n%s", y)
	}
	s, err := Compose(readTestdata(t, "small.yaml"), testLock(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Hash == c.Hash {
		t.Error("hash ignores the platform spec")
	}
}

// mutate returns small.yaml with each old replaced by new (each must occur).
func mutate(t *testing.T, pairs ...string) []byte {
	t.Helper()
	s := string(readTestdata(t, "small.yaml"))
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("testdata lacks %q", pairs[i])
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	return []byte(s)
}

func TestComposeRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec []byte
		res  map[string]config.Resources
		opts []Option
		want string
	}{
		{
			name: "cycle",
			spec: mutate(t, "      prepare-data:\n        cachingOptions:\n          enableCache: true\n        componentRef:\n          name: comp-prepare-data\n",
				"      prepare-data:\n        cachingOptions:\n          enableCache: true\n        componentRef:\n          name: comp-prepare-data\n        dependentTasks:\n        - train\n"),
			want: "task prepare-data: dependency cycle in root: prepare-data → train → prepare-data",
		},
		{
			name: "missing executor",
			spec: mutate(t, "    executorLabel: exec-train\n", "    executorLabel: exec-trian\n"),
			want: `task train, executor exec-trian: executor "exec-trian" of component "comp-train" does not exist in deploymentSpec.executors`,
		},
		{
			name: "missing component",
			spec: mutate(t, "          name: comp-train\n", "          name: comp-nope\n"),
			want: `task train: component "comp-nope" does not exist in components`,
		},
		{
			name: "unbound input",
			spec: mutate(t, "          parameters:\n            epochs:\n              componentInputParameter: epochs\n", ""),
			want: `task train: input parameter "epochs" of component "comp-train" is not bound`,
		},
		{
			name: "malformed placeholder",
			spec: mutate(t, `'{{$.inputs.parameters[''epochs'']}}'`, `'{{$.inputs.parameters[epochs]}}'`),
			want: `task train, executor exec-train: malformed placeholder "{{$.inputs.parameters[epochs]}}": the name must be in single quotes`,
		},
		{
			name: "placeholder names unknown input",
			spec: mutate(t, `'{{$.inputs.parameters[''epochs'']}}'`, `'{{$.inputs.parameters[''epoch'']}}'`),
			want: `task train, executor exec-train: placeholder {{$.inputs.parameters['epoch']}} names input parameter "epoch" that the component does not declare`,
		},
		{
			name: "image missing from lock",
			spec: mutate(t, "image: djia30/train\n", "image: djia30/evaluate:v2\n"),
			want: `task train, executor exec-train: image "djia30/evaluate:v2" is not in the components lock (.branchml/components.lock.json)`,
		},
		{
			name: "input over size limit",
			spec: readTestdata(t, "small.yaml"),
			opts: []Option{WithMaxBytes(1000)},
			want: "the spec file is 2834 bytes, over the 1000-byte limit of the KFP API server's pipeline upload",
		},
		{
			name: "composed over size limit",
			spec: readTestdata(t, "small.yaml"),
			opts: []Option{WithMaxBytes(2850)},
			want: "the composed spec is 2903 bytes, over the 2850-byte limit",
		},
		{
			name: "resources for unknown task",
			spec: readTestdata(t, "small.yaml"),
			res:  map[string]config.Resources{"evaluate": {CPU: "1"}},
			want: "task evaluate: pipeline.resources names a task that is not in the pipeline's root DAG (use a task name of the root DAG: prepare-data, train)",
		},
		{
			name: "bad cpu",
			spec: readTestdata(t, "small.yaml"),
			res:  map[string]config.Resources{"train": {CPU: "two"}},
			want: `task train, executor exec-train: pipeline.resources cpu "two" is not a positive quantity`,
		},
		{
			name: "not a pipeline spec",
			spec: mutate(t, "schemaVersion: 2.1.0\n", "schemaVersion: 2.1.0\nunknownField: 1\n"),
			want: "not a KFP v2 PipelineSpec",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compose(tc.spec, testLock(), tc.res, tc.opts...)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a *ValidationError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestMaxSpecBytes(t *testing.T) {
	if MaxSpecBytes != 33554432 {
		t.Fatalf("MaxSpecBytes = %d", MaxSpecBytes)
	}
	big := append(readTestdata(t, "small.yaml"), make([]byte, MaxSpecBytes)...)
	_, err := Compose(big, testLock(), nil)
	if err == nil || !strings.Contains(err.Error(), "over the 33554432-byte limit") {
		t.Fatalf("err = %v", err)
	}
}

func TestImageRepository(t *testing.T) {
	for in, want := range map[string]string{
		"djia30/train:latest":            "djia30/train",
		"djia30/train":                   "djia30/train",
		"reg:5000/djia30/train":          "reg:5000/djia30/train",
		"reg:5000/djia30/train:v1":       "reg:5000/djia30/train",
		"reg/djia30/train@" + digestPrep: "reg/djia30/train",
	} {
		if got, _ := ImageRepository(in); got != want {
			t.Errorf("ImageRepository(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoadRejects(t *testing.T) {
	for in, want := range map[string]string{
		"":                                 "empty spec",
		"# only a comment\n":               "empty spec",
		"a: [1\n":                          "document 1: not valid YAML",
		"- 1\n- 2\n":                       "document 1: not a mapping",
		"root: {}\n---\nfoo: 1\n":          `document 2: not a PlatformSpec`,
		"platforms: {}\n":                  "document 1: a PlatformSpec",
		"pipelineInfo: {name: x}\n":        `has no "root"`,
		"root: {}\n---\na: 1\n---\nb: 1\n": "3 YAML documents",
	} {
		_, err := Load([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%q) = %v, want %q", in, err, want)
		}
	}
}

func BenchmarkCompose(b *testing.B) {
	spec := readTestdata(b, "small.yaml")
	lock := testLock()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compose(spec, lock, testResources); err != nil {
			b.Fatal(err)
		}
	}
}
