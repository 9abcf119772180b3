package jenkins_test

import (
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/backends/jenkins"
)

func TestSeedJobConfigXML(t *testing.T) {
	got, err := jenkins.SeedJob{Repo: "https://github.com/branchml/branchml.git?a=1&b=<2>", CredentialsID: "github-app"}.ConfigXML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"<url>https://github.com/branchml/branchml.git?a=1&amp;b=&lt;2&gt;</url>\n          <credentialsId>github-app</credentialsId>",
		"<name>*/main</name>",
		"<scriptPath>jobs/seed.groovy</scriptPath>\n    <lightweight>true</lightweight>",
		`<definition class="org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition" plugin="workflow-cps">`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config.xml lacks %q:\n%s", want, got)
		}
	}
	public, _ := jenkins.SeedJob{Repo: "https://example.com/lib.git", Branch: "release-1"}.ConfigXML()
	if strings.Contains(public, "credentialsId") || !strings.Contains(public, "<name>*/release-1</name>") {
		t.Errorf("public repo config:\n%s", public)
	}
	if _, err := (jenkins.SeedJob{}).ConfigXML(); err == nil || !strings.Contains(err.Error(), "--library-repo") {
		t.Errorf("want an error naming --library-repo, got %v", err)
	}
}

func TestSameConfigIgnoresJenkinsReserialization(t *testing.T) {
	desired, err := jenkins.SeedJob{Repo: "https://github.com/branchml/branchml.git", CredentialsID: "github-app"}.ConfigXML()
	if err != nil {
		t.Fatal(err)
	}
	// What Jenkins answers after storing desired and running the seed build
	// once: XStream2.toXMLUTF8's declaration, plugin="name@version",
	// <actions/>, and the job properties the pipeline's options added.
	jenkinsCopy := strings.NewReplacer(
		"<?xml version='1.1' encoding='UTF-8'?>", `<?xml version="1.1" encoding="UTF-8"?>`,
		`plugin="workflow-job"`, `plugin="workflow-job@1571.1580.v18e46842c125"`,
		`plugin="git"`, `plugin="git@5.10.1"`,
		"<keepDependencies>", "<actions/>\n  <keepDependencies>",
		"<properties/>", "<properties><org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty><abortPrevious>false</abortPrevious></org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty></properties>",
	).Replace(desired)
	for _, c := range []struct {
		name, current string
		same          bool
	}{
		{"as posted", desired, true},
		{"as Jenkins answers it", jenkinsCopy, true},
		{"other repository", strings.Replace(jenkinsCopy, "branchml/branchml.git", "branchml/fork.git", 1), false},
		{"other branch", strings.Replace(jenkinsCopy, "<name>*/main</name>", "<name>*/dev</name>", 1), false},
		{"no credentials", strings.Replace(jenkinsCopy, "<credentialsId>github-app</credentialsId>", "", 1), false},
		{"other definition class", strings.Replace(jenkinsCopy, "cps.CpsScmFlowDefinition", "cps.CpsFlowDefinition", 1), false},
		{"disabled by hand", strings.Replace(jenkinsCopy, "<disabled>false</disabled>", "<disabled>true</disabled>", 1), false},
	} {
		got, err := jenkins.SameConfig(c.current, desired)
		if err != nil || got != c.same {
			t.Errorf("%s: SameConfig = %v, %v; want %v", c.name, got, err, c.same)
		}
	}
	if _, err := jenkins.SameConfig("<html>Jenkins is starting", desired); err == nil || !strings.Contains(err.Error(), "config.xml from Jenkins") {
		t.Errorf("malformed answer: want an error naming Jenkins' config.xml, got %v", err)
	}
}

func TestScriptApprovalHash(t *testing.T) {
	// script-security's ScriptApproval.Hasher.SHA512: sha512("groovy:" + script).
	// Expected value: printf 'groovy:%s' 'folder("ml")' | sha512sum
	got := jenkins.ScriptApprovalHash([]byte(`folder("ml")`))
	want := "SHA512:" + "95eb4ed64b2300ddb2c707103f9fb78d52a6b92f47cf5b9dab6a24bb294eb188729737d0c114c832a8860366aa7ba199fe5ea9cd834850cb8554ae37ae703e52"
	if got != want {
		t.Errorf("ScriptApprovalHash = %s\nwant %s", got, want)
	}
}

func FuzzSameConfig(f *testing.F) {
	desired, _ := jenkins.SeedJob{Repo: "https://github.com/branchml/branchml.git"}.ConfigXML()
	f.Add(desired)
	f.Add(`<?xml version="1.1" encoding="UTF-8"?><flow-definition plugin="workflow-job@1"><actions/></flow-definition>`)
	f.Add("<a><b>x</b><b/></a>")
	f.Add("<<<")
	f.Fuzz(func(t *testing.T, current string) {
		same, err := jenkins.SameConfig(current, desired)
		if err != nil && same {
			t.Fatalf("SameConfig(%q) = true with error %v", current, err)
		}
		// Every document covers itself.
		if err == nil {
			if ok, err2 := jenkins.SameConfig(current, current); err2 == nil && !ok {
				t.Fatalf("%q does not cover itself", current)
			}
		}
	})
}
