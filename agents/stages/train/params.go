package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
)

// ComposedSpecPath is where the pipeline stage writes the composed spec
// on the pipeline branch; its root input definitions type the parameters.
const ComposedSpecPath = records.PipelineSpecPath

// specParameterTypes reads the parameterType of each root input of the
// composed spec on the pipeline branch (nil when the branch has none).
func (s *stage) specParameterTypes(ctx context.Context) (map[string]string, error) {
	raw, err := s.o.Forge.ReadFile(ctx, s.cfg.Branches[config.StagePipeline], ComposedSpecPath)
	if errors.Is(err, forge.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, agent.Failed("read "+ComposedSpecPath, err, "check the forge (backends.forge) and its credentials")
	}
	var spec struct {
		Root struct {
			InputDefinitions struct {
				Parameters map[string]struct {
					ParameterType string `yaml:"parameterType"`
				} `yaml:"parameters"`
			} `yaml:"inputDefinitions"`
		} `yaml:"root"`
	}
	// The first YAML document is the PipelineSpec (YAML 1.2, as KFP reads it).
	if err := yaml.NewDecoder(strings.NewReader(string(raw))).Decode(&spec); err != nil {
		s.log().Warnf("%s: %v: parameters are not typed by the pipeline spec", ComposedSpecPath, err)
		return nil, nil
	}
	out := map[string]string{}
	for n, p := range spec.Root.InputDefinitions.Parameters {
		out[n] = p.ParameterType
	}
	return out, nil
}

// typeParameters converts each of training.parameters to the KFP type the
// pipeline declares (STRING, NUMBER_INTEGER, NUMBER_DOUBLE, BOOLEAN, LIST,
// STRUCT), so that values from branchml.yaml, BRANCHML_TRAINING_PARAMETERS_*
// or --set reach runtime_config.parameters as the pipeline expects them. A
// value that cannot be one is a usage error (exit 2) naming the parameter,
// its type and the value. Parameters the spec does not declare, and all of
// them when the pipeline branch has no composed spec, pass as they are.
func (s *stage) typeParameters(ctx context.Context, params map[string]any) error {
	types, err := s.specParameterTypes(ctx)
	if err != nil || types == nil {
		return err
	}
	var bad []string
	for _, name := range sortedNames(s.cfg.Training.Parameters) {
		t, ok := types[name]
		if !ok {
			continue
		}
		v, err := asKFPType(params[name], t)
		if err != nil {
			bad = append(bad, fmt.Sprintf("training.parameters.%s: %v", name, err))
			continue
		}
		params[name] = v
	}
	if len(bad) > 0 {
		return agent.Usagef("give each parameter a value of the type the pipeline declares (root inputDefinitions in "+s.cfg.Pipeline.Spec+")", "%s", strings.Join(bad, "; "))
	}
	return nil
}

func sortedNames(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// asKFPType converts v (decoded YAML or JSON) to parameter type t; strings
// that hold the value (from environment variables) are parsed.
func asKFPType(v any, t string) (any, error) {
	fail := func() (any, error) {
		js, _ := json.Marshal(v)
		return nil, fmt.Errorf("%s is not a %s", js, t)
	}
	str, isStr := v.(string)
	switch t {
	case "STRING":
		switch x := v.(type) {
		case string:
			return x, nil
		case bool:
			return strconv.FormatBool(x), nil
		case float64:
			return strconv.FormatFloat(x, 'f', -1, 64), nil
		case int, int64, json.Number:
			return fmt.Sprint(x), nil
		}
		return fail()
	case "NUMBER_INTEGER":
		f, ok := number(v)
		if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return fail()
		}
		return int64(f), nil
	case "NUMBER_DOUBLE":
		if f, ok := number(v); ok {
			return f, nil
		}
		return fail()
	case "BOOLEAN":
		if b, ok := v.(bool); ok {
			return b, nil
		}
		if b, err := strconv.ParseBool(str); isStr && err == nil {
			return b, nil
		}
		return fail()
	case "LIST":
		if l, ok := v.([]any); ok {
			return l, nil
		}
		var l []any
		if isStr && json.Unmarshal([]byte(str), &l) == nil && l != nil {
			return l, nil
		}
		return fail()
	case "STRUCT":
		if m, ok := v.(map[string]any); ok {
			return m, nil
		}
		var m map[string]any
		if isStr && json.Unmarshal([]byte(str), &m) == nil && m != nil {
			return m, nil
		}
		return fail()
	}
	return v, nil // a type this version does not know: as given
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
	}
	return 0, false
}
