package pipelinespec

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	yaml3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// Each construct the KFP SDK compiles, in an IR file of ours
// (testdata/constructs), is accepted as KFP accepts it.
func TestConstructsAreAccepted(t *testing.T) {
	for _, name := range []string{"loops_collected", "artifact_lists", "conditions_exit_oneof", "importer_workspace", "platform_pvc", "fstring_resources", "yaml11_strings"} {
		t.Run(name, func(t *testing.T) {
			if _, err := Validate(readTestdata(t, "constructs/"+name+".yaml")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Variants of those files that KFP refuses are refused, naming why.
func TestConstructsRefused(t *testing.T) {
	for _, tc := range []struct{ name, file, old, new, want string }{
		{"no pipeline name", "loops_collected", "pipelineInfo: {name: loops-collected}", "pipelineInfo: {name: }",
			"pipelineInfo.name is empty: the KFP API server refuses a pipeline without a name"},
		{"bad pipeline name", "loops_collected", "pipelineInfo: {name: loops-collected}", "pipelineInfo: {name: LOOPS}", `pipelineInfo.name "LOOPS"`},
		{"schema version", "loops_collected", "schemaVersion: 2.1.0", "schemaVersion: 2.0.0", `schemaVersion "2.0.0": the KFP API server accepts only 2.1.0`},
		{"loop without iterator", "loops_collected", "        parameterIterator:\n          itemInput: pipelinechannel--loop-item-param-1\n          items: {raw: '[1, 2, 3]'}\n", "",
			`task for-loop-1: input parameter "pipelinechannel--loop-item-param-1" of component "comp-for-loop-1" is not bound`},
		{"newer field out of place", "importer_workspace", "        command: [use,", "        downloadToWorkspace: true\n        command: [use,", `unknown field "downloadToWorkspace"`},
		{"unused extra input", "fstring_resources", "            text:\n              runtimeValue: {constant: 'Hello {{$.inputs.parameters[''pipelinechannel--name'']}}'}",
			"            text:\n              runtimeValue: {constant: Hello}",
			`task greet: binds input parameter "pipelinechannel--name" that component "comp-greet" does not declare and no placeholder of the task uses`},
		{"whole artifact that is no list", "importer_workspace", "[use, '{{$.inputs.artifacts[''data''].path}}']", "[use, '{{$.inputs.artifacts[''data'']}}']",
			`placeholder {{$.inputs.artifacts['data']}} names input artifact "data" whole, which only a list of artifacts takes`},
		{"duplicate key", "loops_collected", "schemaVersion: 2.1.0", "schemaVersion: 2.1.0\nschemaVersion: 2.1.0", `key "schemaVersion" appears twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := string(readTestdata(t, "constructs/"+tc.file+".yaml"))
			if !strings.Contains(spec, tc.old) {
				t.Fatalf("%s has no %q", tc.file, tc.old)
			}
			_, err := Validate([]byte(strings.Replace(spec, tc.old, tc.new, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %s", err, tc.want)
			}
		})
	}
}

// YAML 1.1 look-alikes (y, n, Y, N, on, off, yes, no, 1:20) are strings, as
// the KFP API server (YAML 1.2) reads them, and the composed spec says the
// same to a YAML 1.2 and a YAML 1.1 reader.
func TestYAML11LookAlikesStayStrings(t *testing.T) {
	in := readTestdata(t, "constructs/yaml11_strings.yaml")
	c, err := Compose(in, testLock(), nil)
	if err != nil {
		t.Fatal(err)
	}
	params := c.Doc.Spec["root"].(map[string]any)["inputDefinitions"].(map[string]any)["parameters"].(map[string]any)
	want := map[string]string{"y": "Y", "n": "N", "on": "yes", "off": "no", "octal": "0777", "clock": "1:20"}
	for k, v := range want {
		p, ok := params[k].(map[string]any)
		if !ok || p["defaultValue"] != v {
			t.Errorf("parameter %s = %#v, want default %q", k, params[k], v)
		}
	}
	cmd := c.Spec.GetDeploymentSpec().GetFields()["executors"].GetStructValue().GetFields()["exec-echo"].GetStructValue().
		GetFields()["container"].GetStructValue().GetFields()["command"].GetListValue().AsSlice()
	if got, _ := json.Marshal(cmd); string(got) != `["echo","{{$.inputs.parameters['y']}}","{{$.inputs.parameters['n']}}","on","off"]` {
		t.Errorf("command = %s", got)
	}
	wantJSON, _ := Canonical(c.Doc.Spec)
	doc := strings.SplitN(string(c.YAML), "\n---\n", 2)[0]
	// YAML 1.1 (sigs.k8s.io/yaml on yaml.v2) and YAML 1.2 (yaml.v3, as KFP's server) readers.
	js11, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var v11, v12 any
	json.Unmarshal(js11, &v11)
	if err := yaml3.Unmarshal([]byte(doc), &v12); err != nil {
		t.Fatal(err)
	}
	var wantV any
	json.Unmarshal(wantJSON, &wantV)
	if !reflect.DeepEqual(v11, wantV) {
		t.Errorf("a YAML 1.1 reader reads the composed spec differently:\n%s\nwant\n%s", js11, wantJSON)
	}
	js12, _ := json.Marshal(v12)
	var v12j any
	json.Unmarshal(js12, &v12j)
	if !reflect.DeepEqual(v12j, wantV) {
		t.Errorf("a YAML 1.2 reader reads the composed spec differently:\n%s\nwant\n%s", js12, wantJSON)
	}
	for _, line := range []string{`      'n':`, `        defaultValue: 'N'`, `      'on':`, `        defaultValue: 'yes'`, `        defaultValue: '1:20'`} {
		if !strings.Contains(string(c.YAML), line+"\n") {
			t.Errorf("composed spec lacks %q:\n%s", line, c.YAML)
		}
	}
}

// The platform spec reaches KFP as written (only images are pinned in the
// pipeline document); argostub images pass through unpinned.
func TestPlatformSpecUnchangedAndArgoStubsUnpinned(t *testing.T) {
	in := readTestdata(t, "constructs/platform_pvc.yaml")
	c, err := Compose(in, testLock(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Images["exec-createpvc"] != "argostub/createpvc" || c.Images["exec-deletepvc"] != "argostub/deletepvc" || c.Images["exec-train"] != testLock().Components["train"].Image {
		t.Errorf("images %v", c.Images)
	}
	orig, _ := Load(in)
	again, err := Load(c.YAML)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := Canonical(orig.Platform)
	b, _ := Canonical(again.Platform)
	if string(a) != string(b) || c.Platform.GetPlatforms()["kubernetes"] == nil {
		t.Errorf("platform spec changed:\n%s\nwas\n%s", b, a)
	}
	for _, want := range []string{"secretAsEnv:", "configMapAsEnv:", "nodeSelector:", "tolerations:", "taskOutputParameter:"} {
		if !strings.Contains(string(c.YAML), want) {
			t.Errorf("composed spec lacks %s", want)
		}
	}
	// Workspaces' newer fields are kept too.
	w, err := Compose(readTestdata(t, "constructs/importer_workspace.yaml"), testLock(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"        downloadToWorkspace: true\n", "    pipelineConfig:\n      workspace:\n"} {
		if !strings.Contains(string(w.YAML), want) {
			t.Errorf("composed workspace spec lacks %q:\n%s", want, w.YAML)
		}
	}
}
