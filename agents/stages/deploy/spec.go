package deploy

import (
	"errors"
	"fmt"
	"path/filepath"

	"sigs.k8s.io/yaml"

	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/records"
)

// SpecError is a deploy.yaml that cannot be used; the stage reports it as
// bad usage (exit 2).
type SpecError struct {
	Path string
	Err  error
}

func (e *SpecError) Error() string { return fmt.Sprintf("deploy spec %s: %v", e.Path, e.Err) }
func (e *SpecError) Unwrap() error { return e.Err }

// LoadSpec reads and checks deploy.yaml (YAML or JSON) at path.
func LoadSpec(path string) (*records.DeploySpec, error) {
	raw, err := config.ReadFileLimited(path, config.MaxSpecBytes)
	if err != nil {
		return nil, &SpecError{Path: path, Err: err}
	}
	return ParseSpec(path, raw)
}

// ParseSpec parses deploy.yaml content; name is used in errors. Unknown
// fields are rejected so that typos surface.
func ParseSpec(name string, raw []byte) (*records.DeploySpec, error) {
	var s records.DeploySpec
	if err := yaml.UnmarshalStrict(raw, &s); err != nil {
		return nil, &SpecError{Path: name, Err: err}
	}
	if err := CheckSpec(&s); err != nil {
		return nil, &SpecError{Path: name, Err: err}
	}
	return &s, nil
}

// CheckSpec reports every problem of s, naming the field and the fix.
func CheckSpec(s *records.DeploySpec) error {
	var errs []error
	if s.APIVersion != records.APIVersion {
		errs = append(errs, fmt.Errorf("apiVersion %q: must be %q", s.APIVersion, records.APIVersion))
	}
	if s.Kind != "DeploySpec" {
		errs = append(errs, fmt.Errorf("kind %q: must be \"DeploySpec\"", s.Kind))
	}
	if s.Model.Name == "" {
		errs = append(errs, errors.New("model.name is empty: give the served model's name (deploy.model)"))
	}
	if s.Model.Version <= 0 {
		errs = append(errs, fmt.Errorf("model.version %d: give the model version (a positive integer, the directory under model.path)", s.Model.Version))
	}
	if s.Model.Path == "" {
		errs = append(errs, errors.New("model.path is empty: give the model base path on the model volume"))
	}
	if s.Strategy != "" && s.Strategy != "canary" && s.Strategy != "ab" {
		errs = append(errs, fmt.Errorf("strategy %q: use canary or ab (or leave it out)", s.Strategy))
	}
	return errors.Join(errs...)
}

// SpecPath is where deploy.yaml lives in workspace.
func SpecPath(workspace string) string { return filepath.Join(workspace, records.DeploySpecPath) }
