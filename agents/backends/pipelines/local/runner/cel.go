package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/kubeflow/pipelines/api/v2alpha1/go/pipelinespec"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Conditions (triggerPolicy.condition) and parameterExpressionSelector
// expressions are CEL, evaluated with cel-go as KFP's driver does
// (backend/src/v2/expression): a condition sees the task's ExecutorInput
// fields (inputs.parameter_values['name'] …), a selector the fields of the
// input's google.protobuf.Value (struct_value, list_value, number_value …,
// and string_value: the value as JSON text); both may call parseJson(string).

var jsonValueType = reflect.TypeOf(&structpb.Value{})

// celCostLimit bounds the work of one evaluation (CEL cost units).
const celCostLimit = 1_000_000

var (
	envOnce              sync.Once
	condEnv, selEnv      *cel.Env
	envErr               error
	parseJSONFunctionOpt = cel.Function("parseJson",
		cel.Overload("parse_json", []*cel.Type{cel.StringType}, cel.DynType, cel.UnaryBinding(celParseJSON)))
)

func envs() (*cel.Env, *cel.Env, error) {
	envOnce.Do(func() {
		condEnv, envErr = cel.NewEnv(cel.DeclareContextProto((&pipelinespec.ExecutorInput{}).ProtoReflect().Descriptor()), parseJSONFunctionOpt)
		if envErr != nil {
			return
		}
		selEnv, envErr = cel.NewEnv(cel.DeclareContextProto((&structpb.Value{}).ProtoReflect().Descriptor()), parseJSONFunctionOpt)
	})
	return condEnv, selEnv, envErr
}

func celParseJSON(arg ref.Val) ref.Val {
	s, ok := arg.Value().(string)
	if !ok {
		return types.MaybeNoSuchOverloadErr(arg)
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return types.NewErr("parseJson: %s", err.Error())
	}
	return types.DefaultTypeAdapter.NativeToValue(v)
}

func conditionEnv() (*cel.Env, error) {
	env, _, err := envs()
	return env, err
}

func selectorEnv() (*cel.Env, error) {
	_, env, err := envs()
	return env, err
}

// compile parses, type-checks and plans expr (at most MaxExpressionLength
// characters) in the environment env gives, under the cost limit; the
// error says why it does not compile.
func compile(expr string, env func() (*cel.Env, error)) (cel.Program, error) {
	if len(expr) > MaxExpressionLength {
		return nil, fmt.Errorf("longer than %d characters", MaxExpressionLength)
	}
	e, err := env()
	if err != nil {
		return nil, err
	}
	ast, iss := e.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, iss.Err()
	}
	return e.Program(ast, cel.CostLimit(celCostLimit))
}

// Condition is a compiled triggerPolicy.condition.
type Condition struct {
	Expr string
	prg  cel.Program
}

// CompileCondition parses and type-checks a condition; the error says why
// it does not parse.
func CompileCondition(expr string) (*Condition, error) {
	prg, err := compile(expr, conditionEnv)
	if err != nil {
		return nil, err
	}
	return &Condition{Expr: expr, prg: prg}, nil
}

// Eval evaluates the condition against the task's executor input.
func (c *Condition) Eval(in *pipelinespec.ExecutorInput) (bool, error) {
	act, err := cel.ContextProtoVars(in)
	if err != nil {
		return false, err
	}
	out, _, err := c.prg.Eval(act)
	if err != nil {
		return false, fmt.Errorf("condition %q: %w", c.Expr, err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("condition %q: evaluates to %v, not a boolean", c.Expr, out.Value())
	}
	return b, nil
}

// Selector is a compiled parameterExpressionSelector.
type Selector struct {
	Expr string
	prg  cel.Program
}

// CompileSelector parses and type-checks a selector expression.
func CompileSelector(expr string) (*Selector, error) {
	prg, err := compile(expr, selectorEnv)
	if err != nil {
		return nil, err
	}
	return &Selector{Expr: expr, prg: prg}, nil
}

// Select evaluates the selector on value v (a JSON value) and returns the
// selected JSON value.
func (s *Selector) Select(v any) (any, error) {
	pv, err := structpb.NewValue(normalizeJSON(v))
	if err != nil {
		return nil, err
	}
	vars := map[string]any{}
	switch k := pv.GetKind().(type) {
	case *structpb.Value_StructValue:
		vars["struct_value"] = k.StructValue
	case *structpb.Value_ListValue:
		vars["list_value"] = k.ListValue
	case *structpb.Value_NumberValue:
		vars["number_value"] = k.NumberValue
	case *structpb.Value_BoolValue:
		vars["bool_value"] = k.BoolValue
	case *structpb.Value_NullValue:
		vars["null_value"] = k.NullValue
	}
	if str, ok := v.(string); ok {
		vars["string_value"] = str
	} else {
		vars["string_value"] = jsonString(v)
	}
	out, _, err := s.prg.Eval(vars)
	if err != nil {
		return nil, fmt.Errorf("selector %q: %w", s.Expr, err)
	}
	raw := out.Value()
	if m, ok := raw.(proto.Message); ok {
		switch x := m.(type) {
		case *structpb.Struct:
			return x.AsMap(), nil
		case *structpb.ListValue:
			return x.AsSlice(), nil
		case *structpb.Value:
			return x.AsInterface(), nil
		}
		return nil, fmt.Errorf("selector %q: result of type %T", s.Expr, m)
	}
	nv, err := out.ConvertToNative(jsonValueType)
	if err == nil {
		if val, ok := nv.(*structpb.Value); ok {
			return val.AsInterface(), nil
		}
	}
	res, err := structpb.NewValue(raw)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("selector %q: result %v is not a JSON value", s.Expr, raw), err)
	}
	return res.AsInterface(), nil
}
