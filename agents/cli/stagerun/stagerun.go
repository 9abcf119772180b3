package stagerun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/internal/atomicfile"
)

// Call is one agent invocation.
type Call struct {
	// Agent is the binary name, e.g. "branchml-train"; App builds it in-process.
	Agent string
	App   func() *ucli.App
	// Command is the agent's command path, e.g. ["run"] or ["status", "r-1"].
	Command []string
	// Params are flag name → value, written to the params JSON file.
	Params map[string]any
	// Dir receives <agent>-params.json, <agent>-result.json and
	// <agent>-error.json (the files branchmlAgent uses).
	Dir string
	// Streams of the agent (logs go to Err).
	Streams cli.Streams
}

// Outcome is what the step reads back.
type Outcome struct {
	ExitCode int
	Result   *agent.Result
	// Details is set when the agent failed and wrote error details.
	Details *agent.ErrorDetails
	// Args is the exact argument vector the agent ran with.
	Args []string
}

// Err returns an error describing a non-zero exit, or nil.
func (o *Outcome) Err() error {
	if o.ExitCode == 0 {
		return nil
	}
	if o.Details != nil {
		msg := o.Details.Why
		if o.Details.What != "" {
			msg = o.Details.What + ": " + msg
		}
		if o.Details.Fix != "" {
			msg += " (fix: " + o.Details.Fix + ")"
		}
		return fmt.Errorf("exit %d: %s", o.ExitCode, msg)
	}
	return fmt.Errorf("exit %d", o.ExitCode)
}

// Args returns the argument vector of c for the given file paths, exactly as
// branchmlAgent builds its sh command (without the program name).
func Args(c Call, params, result, errDetails string) []string {
	args := append([]string{}, c.Command...)
	return append(args, "--params", params, "--result", result, "--error-details", errDetails)
}

// Run writes the params file, runs the agent in-process and reads back its
// result and error details. A non-zero exit is reported in Outcome, not as
// an error; the error is for failures to run at all.
func Run(ctx context.Context, c Call) (*Outcome, error) {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, err
	}
	params := filepath.Join(c.Dir, c.Agent+"-params.json")
	result := filepath.Join(c.Dir, c.Agent+"-result.json")
	errFile := filepath.Join(c.Dir, c.Agent+"-error.json")
	for _, p := range []string{result, errFile} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	if c.Params == nil {
		c.Params = map[string]any{}
	}
	if err := atomicfile.WriteJSON(params, c.Params); err != nil {
		return nil, err
	}
	args := Args(c, params, result, errFile)
	code := cli.Run(ctx, c.App(), append([]string{c.Agent}, args...), c.Streams)
	out := &Outcome{ExitCode: code, Args: append([]string{c.Agent}, args...)}
	if raw, err := os.ReadFile(result); err == nil {
		var r agent.Result
		if err := json.Unmarshal(raw, &r); err != nil {
			return out, fmt.Errorf("read %s: %w", result, err)
		}
		out.Result = &r
	}
	if raw, err := os.ReadFile(errFile); err == nil {
		var d agent.ErrorDetails
		if err := json.Unmarshal(raw, &d); err != nil {
			return out, fmt.Errorf("read %s: %w", errFile, err)
		}
		out.Details = &d
	}
	return out, nil
}
