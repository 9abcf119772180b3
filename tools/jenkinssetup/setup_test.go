package jenkinssetup

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/branchml/branchml/agents/backends/jenkins"
)

func read(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadYAML(t *testing.T, rel string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(read(t, rel), &m); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return m
}

// at walks a path of map keys and list indexes ("jenkins", "clouds", 0, …).
func at(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %v: %v is no map", path, p)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("at %v: no item %d", path, k)
			}
			v = l[k]
		}
	}
	return v
}

func TestCascApprovesTheSeedScriptAsItIs(t *testing.T) {
	casc := loadYAML(t, "docs/jenkins/casc.yaml")
	want := jenkins.ScriptApprovalHash(read(t, "jobs/multibranch.groovy"))
	hashes := at(t, casc, "security", "scriptApproval", "approvedScriptHashes").([]any)
	if len(hashes) != 1 || hashes[0] != want {
		t.Fatalf("docs/jenkins/casc.yaml approves %v; jobs/multibranch.groovy is %s: replace it with the output of\n"+
			"  branchml jenkins script-hash jobs/multibranch.groovy", hashes, want)
	}
}

func TestCascCredentialsAreTheIDsTheLibraryUses(t *testing.T) {
	casc := loadYAML(t, "docs/jenkins/casc.yaml")
	creds := at(t, casc, "credentials", "system", "domainCredentials", 0, "credentials").([]any)
	var got []string
	for _, c := range creds {
		for kind, v := range c.(map[string]any) {
			fields := v.(map[string]any)
			got = append(got, fields["id"].(string))
			for name, val := range fields {
				// No secret value in the file: only ${…} references.
				if s, ok := val.(string); ok && (name == "secret" || name == "password" || name == "privateKey") && !strings.HasPrefix(s, "${") {
					t.Errorf("%s %s: %s holds a value, not a ${…} reference", kind, fields["id"], name)
				}
			}
		}
	}
	// The IDs the steps bind by default (vars/branchmlAgent.groovy) and the
	// seed script's scan credential (jobs/multibranch.groovy).
	var want []string
	for _, m := range regexp.MustCompile(`id: '(branchml-[a-z-]+)'`).FindAllStringSubmatch(string(read(t, "vars/branchmlAgent.groovy")), -1) {
		want = append(want, m[1])
	}
	scan := regexp.MustCompile(`credentialsId\(repo\.credentialsId \?: '([^']+)'\)`).FindStringSubmatch(string(read(t, "jobs/multibranch.groovy")))
	if scan == nil {
		t.Fatal("jobs/multibranch.groovy: no default credentialsId")
	}
	want = append(want, scan[1])
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") || len(want) != 5 {
		t.Fatalf("casc.yaml declares %v; the library uses %v", got, want)
	}
}

func TestCascLibraryCloudAndSeedJob(t *testing.T) {
	casc := loadYAML(t, "docs/jenkins/casc.yaml")
	lib := at(t, casc, "unclassified", "globalLibraries", "libraries", 0).(map[string]any)
	if lib["name"] != "branchml" {
		t.Errorf("library name %v: the Jenkinsfiles load @Library('branchml')", lib["name"])
	}
	git := at(t, lib, "retriever", "modernSCM", "scm", "git").(map[string]any)
	// Parameters of GitSCMSource (git) and SCMSourceRetriever (modernSCM) in the catalog of plugins.txt.
	var catalog struct {
		Describables map[string][]struct {
			Class  string
			Params map[string]any
		}
	}
	if err := json.Unmarshal(read(t, "test/groovy/catalog/jenkins.json"), &catalog); err != nil {
		t.Fatal(err)
	}
	params := func(symbol, class string) map[string]any {
		for _, d := range catalog.Describables[symbol] {
			if d.Class == class {
				return d.Params
			}
		}
		t.Fatalf("catalog: no %s %s", symbol, class)
		return nil
	}
	for k := range git {
		if _, ok := params("git", "jenkins.plugins.git.GitSCMSource")[k]; !ok {
			t.Errorf("git source: %s is no parameter of GitSCMSource", k)
		}
	}
	agent := at(t, casc, "jenkins", "globalNodeProperties", 0, "envVars", "env", 0).(map[string]any)
	if agent["key"] != "BRANCHML_AGENTS_IMAGE" {
		t.Errorf("library-level image setting: %v", agent)
	}
	seed := at(t, casc, "jobs", 0, "script").(string)
	for _, want := range []string{"pipelineJob('branchml-seed')", "scriptPath('jobs/seed.groovy')", "credentials('branchml-github-app')"} {
		if !strings.Contains(seed, want) {
			t.Errorf("seed job script lacks %s", want)
		}
	}
	if strings.Contains(seed, "$") {
		t.Error("the seed job script holds a $: JCasC would substitute it")
	}
}

func TestAgentRBACHasThePodTemplatesAccountAndTheBackendsCalls(t *testing.T) {
	pod := loadYAML(t, "resources/branchml/pod-template.yaml")
	sa := at(t, pod, "spec", "serviceAccountName").(string)
	docs := strings.Split(string(read(t, "resources/branchml/agent-rbac.yaml")), "\n---\n")
	granted := map[string]bool{}
	accounts := map[string]bool{}
	for _, d := range docs {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(d), &m); err != nil {
			t.Fatal(err)
		}
		switch m["kind"] {
		case "ServiceAccount":
			accounts[at(t, m, "metadata", "name").(string)] = true
		case "Role", "ClusterRole":
			if name := at(t, m, "metadata", "name").(string); !strings.HasPrefix(name, "branchml-agent") {
				continue
			}
			for _, r := range m["rules"].([]any) {
				rule := r.(map[string]any)
				for _, g := range rule["apiGroups"].([]any) {
					for _, res := range rule["resources"].([]any) {
						for _, v := range rule["verbs"].([]any) {
							granted[g.(string)+"/"+res.(string)+":"+v.(string)] = true
						}
					}
				}
			}
		}
	}
	if !accounts[sa] || !accounts["jenkins"] {
		t.Fatalf("ServiceAccounts %v: want the pod template's %s and jenkins", accounts, sa)
	}
	// The calls of agents/backends/storage/trident and agents/backends/serving/kubernetes.
	for _, want := range []string{
		"/persistentvolumeclaims:create", "/persistentvolumeclaims:get", "/persistentvolumeclaims:delete",
		"snapshot.storage.k8s.io/volumesnapshots:create", "snapshot.storage.k8s.io/volumesnapshots:get",
		"snapshot.storage.k8s.io/volumesnapshots:list", "snapshot.storage.k8s.io/volumesnapshots:patch",
		"snapshot.storage.k8s.io/volumesnapshots:delete", "snapshot.storage.k8s.io/volumesnapshotclasses:get",
		"snapshot.storage.k8s.io/volumesnapshotcontents:get",
		"trident.netapp.io/tridentactionsnapshotrestores:create", "trident.netapp.io/tridentactionsnapshotrestores:get",
		"trident.netapp.io/tridentactionsnapshotrestores:delete",
		"apps/deployments:create", "apps/deployments:get", "apps/deployments:update", "apps/deployments:delete",
		"/services:create", "/services:list", "/configmaps:create", "/configmaps:get", "/configmaps:update",
		"discovery.k8s.io/endpointslices:list",
		"/services/proxy:get", "/services/proxy:create", "/pods/proxy:get", "/pods/proxy:create", // access: apiserver
	} {
		if !granted[want] {
			t.Errorf("branchml-agent is not granted %s", want)
		}
	}
}

func TestPluginsTxtFormat(t *testing.T) {
	line := regexp.MustCompile(`^[a-z0-9-]+:[0-9][0-9A-Za-z._-]*$`)
	n := 0
	for _, l := range strings.Split(string(read(t, "plugins.txt")), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if !line.MatchString(l) {
			t.Errorf("plugins.txt: %q is not artifactId:version", l)
		}
		if strings.HasPrefix(l, "pipeline-githubnotify-step:") {
			t.Error("plugins.txt: the library needs no notify plugin")
		}
		n++
	}
	if n < 20 {
		t.Errorf("plugins.txt: %d plugins", n)
	}
}
