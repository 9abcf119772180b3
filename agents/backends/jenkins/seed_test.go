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
