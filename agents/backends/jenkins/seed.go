package jenkins

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"text/template"
)

// SeedJob describes the seed job: a Pipeline job that checks out the
// branchml shared library's repository and runs jobs/seed.groovy, which runs
// the Job DSL scripts of jobs/ (one Multibranch Pipeline job per ML repository).
type SeedJob struct {
	// Repo is the git URL of the shared library's repository.
	Repo string
	// Branch of Repo to run (default "main").
	Branch string
	// CredentialsID is the Jenkins credential to clone Repo with ("" for a public repository).
	CredentialsID string
	// ScriptPath is the pipeline inside Repo (default "jobs/seed.groovy").
	ScriptPath string
}

// seedTemplate holds only elements Jenkins writes back when it serializes
// the job (fields of WorkflowJob, CpsScmFlowDefinition, GitSCM 5.x,
// UserRemoteConfig and BranchSpec), so that SameConfig finds a re-seed
// unchanged. The job's properties (no concurrent builds, build discarder)
// come from jobs/seed.groovy's options, which Jenkins adds on the first
// build.
var seedTemplate = template.Must(template.New("seed").Funcs(template.FuncMap{"x": xmlText}).Parse(
	`<?xml version='1.1' encoding='UTF-8'?>
<flow-definition plugin="workflow-job">
  <description>branchml seed job: runs {{x .ScriptPath}} of {{x .Repo}} ({{x .Branch}}), the Job DSL scripts that create one Multibranch Pipeline job per ML repository. Managed by 'branchml jenkins seed': edits here are overwritten.</description>
  <keepDependencies>false</keepDependencies>
  <properties/>
  <definition class="org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition" plugin="workflow-cps">
    <scm class="hudson.plugins.git.GitSCM" plugin="git">
      <configVersion>2</configVersion>
      <userRemoteConfigs>
        <hudson.plugins.git.UserRemoteConfig>
          <url>{{x .Repo}}</url>{{if .CredentialsID}}
          <credentialsId>{{x .CredentialsID}}</credentialsId>{{end}}
        </hudson.plugins.git.UserRemoteConfig>
      </userRemoteConfigs>
      <branches>
        <hudson.plugins.git.BranchSpec>
          <name>*/{{x .Branch}}</name>
        </hudson.plugins.git.BranchSpec>
      </branches>
      <doGenerateSubmoduleConfigurations>false</doGenerateSubmoduleConfigurations>
      <extensions/>
    </scm>
    <scriptPath>{{x .ScriptPath}}</scriptPath>
    <lightweight>true</lightweight>
  </definition>
  <disabled>false</disabled>
</flow-definition>
`))

func xmlText(s string) (string, error) {
	var b bytes.Buffer
	if err := xml.EscapeText(&b, []byte(s)); err != nil {
		return "", err
	}
	return b.String(), nil
}

// ConfigXML renders the seed job's config.xml (a workflow-job
// flow-definition with a CpsScmFlowDefinition over git), defaults applied.
func (s SeedJob) ConfigXML() (string, error) {
	if strings.TrimSpace(s.Repo) == "" {
		return "", errors.New("seed job: no library repository; give --library-repo (the git URL of the branchml shared library)")
	}
	if s.Branch == "" {
		s.Branch = "main"
	}
	if s.ScriptPath == "" {
		s.ScriptPath = "jobs/seed.groovy"
	}
	var b bytes.Buffer
	if err := seedTemplate.Execute(&b, s); err != nil {
		return "", fmt.Errorf("render seed job: %w", err)
	}
	return b.String(), nil
}
