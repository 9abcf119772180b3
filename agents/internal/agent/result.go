package agent

import (
	"context"
	"errors"
	"time"

	"github.com/branchml/branchml/agents/internal/secrets"
)

// ResultAPIVersion is the apiVersion of result and error-details JSON.
const ResultAPIVersion = "branchml.dev/v1"

// Result is the one JSON object every agent command writes to --result and,
// with -o json, to stdout. Outputs holds the stage's own fields (IDs,
// digests, metrics, verdict) and is marshalled as given. With -o text the
// Summary is printed, followed by the Outputs flattened to "key: value"
// lines unless the Summary has several lines (then it is the full text).
type Result struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"` // "Result"
	Stage      string    `json:"stage"`
	OK         bool      `json:"ok"`
	ExitCode   int       `json:"exitCode"`
	DryRun     bool      `json:"dryRun"`
	Summary    string    `json:"summary"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
	Outputs    any       `json:"outputs,omitempty"`
	Links      []Link    `json:"links,omitempty"`
	Reports    []Report  `json:"reports,omitempty"`
}

// Link is a named URL the Jenkins step shows in the build description.
type Link struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// Report is a file the Jenkins step publishes: Kind "junit" goes to the junit
// step, anything else is archived. Path is relative to the workspace.
type Report struct {
	Name string `json:"name"`
	Path string `json:"path"`
	Kind string `json:"kind"`
}

// ErrorDetails is the JSON written to --error-details on failure.
type ErrorDetails struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"` // "ErrorDetails"
	Stage      string `json:"stage"`
	ExitCode   int    `json:"exitCode"`
	What       string `json:"what"`
	Why        string `json:"why"`
	Fix        string `json:"fix,omitempty"`
}

// BuildContext is what Jenkins knows about the build that runs a stage.
type BuildContext struct {
	// Workspace is the checked-out ML repository ("" = current directory).
	Workspace string `json:"workspace,omitempty"`
	Branch    string `json:"branch,omitempty"`
	// Commit is the source commit; on PR builds the PR head, not Jenkins' merge commit.
	Commit    string `json:"commit,omitempty"`
	ChangeID  string `json:"changeId,omitempty"`
	BuildURL  string `json:"buildUrl,omitempty"`
	BuildUser string `json:"buildUser,omitempty"`
}

// Details builds the error-details of err, secrets masked.
func Details(stage string, err error) *ErrorDetails {
	d := &ErrorDetails{APIVersion: ResultAPIVersion, Kind: "ErrorDetails", Stage: stage, ExitCode: CodeOf(err)}
	var e *Error
	if errors.As(err, &e) {
		d.What = e.What
		if e.Err != nil {
			d.Why = e.Err.Error()
		}
	} else {
		d.Why = err.Error()
	}
	d.Fix = FixOf(err)
	if errors.Is(err, context.Canceled) {
		d.ExitCode = ExitInterrupted
	}
	d.What, d.Why, d.Fix = secrets.Redact(d.What), secrets.Redact(d.Why), secrets.Redact(d.Fix)
	return d
}
