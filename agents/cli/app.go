package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/internal/atomicfile"
	"github.com/branchml/branchml/agents/internal/secrets"
)

// Version is the branchml version, set at link time with
// -ldflags "-X github.com/branchml/branchml/agents/cli.Version=v1.2.3".
var Version = "v0.1.0-dev"

// Streams are the standard streams a command uses; tests inject buffers.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// StdStreams are the process's own streams.
func StdStreams() Streams { return Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr} }

// Env is what a command's run function gets.
type Env struct {
	Ctx context.Context
	Log *logrus.Logger
	// Out is where the command may print extra human output (stdout);
	// the summary itself is printed by the framework from the Result.
	Out io.Writer
	// Config is the loaded configuration (nil unless the spec needs it).
	Config *config.Config
	DryRun bool
	// Output is "text" or "json".
	Output string
	Build  agent.BuildContext
	// CLI gives access to the command's own flags and arguments.
	CLI *ucli.Context
}

// Spec describes one command.
type Spec struct {
	Name, Usage, ArgsUsage, Description string
	// Stage is the stage name written into result JSON ("build", "train" …).
	Stage string
	// Flags are the command's own flags, added to the shared ones.
	Flags []ucli.Flag
	// NeedsConfig loads --config before Run (a bad config exits 2).
	NeedsConfig bool
	// BuildFlags adds --workspace, --branch, --commit, --change-id,
	// --build-url, --build-user; a set --change-id forces --dry-run.
	BuildFlags bool
	// Run does the work. A nil Result with a nil error is a plain success.
	Run func(*Env) (*agent.Result, error)
	// Subcommands, for a command that is only a group (Run nil).
	Subcommands []*ucli.Command
}

// SharedFlags are the flags of every command.
func SharedFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "config", Value: "branchml.yaml", EnvVars: []string{"BRANCHML_CONFIG"}, Usage: "the ML repository's `FILE` (relative to --workspace)"},
		&ucli.StringSliceFlag{Name: "set", Usage: "override a config field, `path=value` (the flags layer; repeatable)"},
		&ucli.StringFlag{Name: "params", EnvVars: []string{"BRANCHML_PARAMS"}, Usage: "JSON `FILE` of flag values (keys are flag names); command-line flags win"},
		&ucli.StringFlag{Name: "result", EnvVars: []string{"BRANCHML_RESULT"}, Usage: "write the result JSON to `FILE`"},
		&ucli.StringFlag{Name: "error-details", EnvVars: []string{"BRANCHML_ERROR_DETAILS"}, Usage: "on failure write the error-details JSON to `FILE`"},
		&ucli.BoolFlag{Name: "dry-run", EnvVars: []string{"BRANCHML_DRY_RUN"}, Usage: "plan only: validate and print what would change; change nothing"},
		&ucli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", EnvVars: []string{"BRANCHML_OUTPUT"}, Usage: "summary format on stdout: text or json"},
		&ucli.StringFlag{Name: "log-format", Value: "text", EnvVars: []string{"BRANCHML_LOG_FORMAT"}, Usage: "log format on stderr: text or json"},
		&ucli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"BRANCHML_LOG_LEVEL"}, Usage: "debug, info, warn or error"},
		&ucli.DurationFlag{Name: "timeout", EnvVars: []string{"BRANCHML_TIMEOUT"}, Usage: "overall deadline, e.g. 30m (0: none)"},
	}
}

// BuildFlags are the build-context flags of stage commands.
func BuildFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "workspace", EnvVars: []string{"WORKSPACE"}, Usage: "the checked-out ML repository `DIR`"},
		&ucli.StringFlag{Name: "branch", EnvVars: []string{"BRANCH_NAME"}, Usage: "the branch being built"},
		&ucli.StringFlag{Name: "commit", EnvVars: []string{"GIT_COMMIT"}, Usage: "the source commit (PR builds: the PR head)"},
		&ucli.StringFlag{Name: "change-id", EnvVars: []string{"CHANGE_ID"}, Usage: "pull request number; when set the stage only plans"},
		&ucli.StringFlag{Name: "build-url", EnvVars: []string{"BUILD_URL"}, Usage: "the Jenkins build URL, for links and lineage"},
		&ucli.StringFlag{Name: "build-user", EnvVars: []string{"BUILD_USER_ID"}, Usage: "who started the build"},
		&ucli.StringFlag{Name: "commit-status", Value: "auto", EnvVars: []string{"BRANCHML_COMMIT_STATUS"}, Usage: "set the stage's commit status through the forge: auto (when --build-url is set), on or off"},
	}
}

// NewApp makes an application with the given commands and a version command.
func NewApp(name, usage string, cmds ...*ucli.Command) *ucli.App {
	app := &ucli.App{
		Name:                 name,
		Usage:                usage,
		Version:              Version,
		HideVersion:          true,
		EnableBashCompletion: true,
		Commands:             append(cmds, versionCommand()),
	}
	app.ExitErrHandler = func(*ucli.Context, error) {} // Run decides the exit code
	// A --set value or an argv word may hold commas ("steps=[10, 100]").
	app.DisableSliceFlagSeparator = true
	return app
}

func versionCommand() *ucli.Command {
	return Command(Spec{
		Name:  "version",
		Usage: "print the version",
		Run: func(e *Env) (*agent.Result, error) {
			res := &agent.Result{Summary: e.CLI.App.Name + " " + Version}
			if e.Output == "json" {
				res.Outputs = map[string]string{"version": Version}
			}
			return res, nil
		},
	})
}

type actionError struct{ err error }

func (a actionError) Error() string { return a.err.Error() }
func (a actionError) Unwrap() error { return a.err }

// Command builds a urfave/cli command from spec with the shared flags, the
// params file, logging, config loading, the result and error-details files.
func Command(spec Spec) *ucli.Command {
	cmd := &ucli.Command{
		Name:        spec.Name,
		Usage:       spec.Usage,
		ArgsUsage:   spec.ArgsUsage,
		Description: spec.Description,
		Subcommands: spec.Subcommands,
	}
	if spec.Run == nil {
		return cmd
	}
	flags := append(SharedFlags(), spec.Flags...)
	if spec.BuildFlags {
		flags = append(flags, BuildFlags()...)
	}
	cmd.Flags = flags
	// A required flag may come from --params, which is read in the action:
	// check it there, after the params file, instead of in urfave/cli.
	required := deferRequired(flags)
	cmd.Action = func(c *ucli.Context) error {
		if err := runAction(c, spec, required); err != nil {
			return actionError{err}
		}
		return nil
	}
	return cmd
}

type ctxKey struct{}

// streamsOf returns the streams Run put in the app's metadata.
func streamsOf(c *ucli.Context) Streams {
	if s, ok := c.App.Metadata["streams"].(Streams); ok {
		return s
	}
	return StdStreams()
}

func runAction(c *ucli.Context, spec Spec, required []string) (err error) {
	started := time.Now().UTC()
	streams := streamsOf(c)
	// Until the flags are known good: a text logger, so that a bad --params
	// still ends in the result and error-details files the caller reads.
	log, _ := NewLogger(streams.Err, "text", "info")
	env := &Env{Log: log, Out: streams.Out, Output: "text", CLI: c}
	var res *agent.Result
	defer func() {
		if r := recover(); r != nil {
			err = agent.Failed("internal error", fmt.Errorf("%v", r), "report this as a bug with the log above")
		}
		finish(env, spec, c, started, res, err)
	}()
	if err := applyParams(c); err != nil {
		return agent.Usage("read --params", err, "give a JSON object whose keys are flag names of '"+spec.Name+"'")
	}
	env.DryRun = c.Bool("dry-run")
	for _, name := range required {
		if !c.IsSet(name) {
			return agent.Usagef("pass --"+name+" (or give \""+name+"\" in --params)", "required flag %q not set", name)
		}
	}
	if log, err = NewLogger(streams.Err, c.String("log-format"), c.String("log-level")); err != nil {
		return agent.Usage("logging flags", err, "use --log-format text|json and --log-level debug|info|warn|error")
	}
	env.Log = log
	c.App.Metadata["logFormat"] = c.String("log-format")
	if spec.ArgsUsage == "" && c.Args().Len() > 0 {
		return agent.Usagef("run '"+c.App.Name+" "+spec.Name+" --help'", "unexpected argument %q: '%s' takes no arguments", c.Args().First(), spec.Name)
	}
	output := c.String("output")
	if output != "text" && output != "json" {
		return agent.Usagef("use -o text or -o json", "unknown output format %q", output)
	}
	env.Output = output
	if spec.BuildFlags {
		env.Build = agent.BuildContext{
			Workspace: c.String("workspace"), Branch: c.String("branch"), Commit: c.String("commit"),
			ChangeID: c.String("change-id"), BuildURL: c.String("build-url"), BuildUser: c.String("build-user"),
		}
		if env.Build.Commit == "" {
			env.Build.Commit = headCommit(ctxOr(c), env.Build.Workspace)
			if env.Build.Commit != "" {
				log.Debugf("--commit defaults to the workspace's HEAD %s", env.Build.Commit)
			}
		}
		if env.Build.ChangeID != "" && !env.DryRun {
			log.Infof("change request %s: planning only (--dry-run)", env.Build.ChangeID)
			env.DryRun = true
		}
	}
	ctx := c.Context
	if ctx == nil {
		ctx = context.Background()
	}
	if d := c.Duration("timeout"); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	env.Ctx = ctx

	if spec.NeedsConfig {
		path := c.String("config")
		if env.Build.Workspace != "" && !filepath.IsAbs(path) {
			path = filepath.Join(env.Build.Workspace, path)
		}
		cfg, cerr := config.Load(path, config.WithSets(c.StringSlice("set")...))
		if cerr != nil {
			fix := "fix the fields named above; the schema is resources/schema/branchml.schema.json"
			if errors.Is(cerr, os.ErrNotExist) {
				fix = "run in the ML repository's root, or pass --config (or --workspace)"
			}
			return agent.Usage("load configuration", cerr, fix)
		}
		env.Config = cfg
		if js, err := json.Marshal(cfg); err == nil {
			secrets.RegisterUserinfo(string(js)) // endpoints, remotes, registry hosts with user:password@
		}
		known := map[string]bool{"BRANCHML_DATA_DIR": true} // the example's data lookup
		for _, f := range c.Command.Flags {
			if ef, ok := f.(interface{ GetEnvVars() []string }); ok {
				for _, v := range ef.GetEnvVars() {
					known[v] = true
				}
			}
		}
		for _, name := range config.UnknownEnv(os.Environ(), known) {
			log.Warnf("%s is not a branchml setting and is ignored (typo? 'branchml config env' lists them)", name)
		}
	}
	res, err = spec.Run(env)
	if err == nil && ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = agent.Failed("timeout", ctx.Err(), "raise --timeout")
	}
	return err
}

// finish prints the summary, writes the result and error-details files.
func finish(env *Env, spec Spec, c *ucli.Context, started time.Time, res *agent.Result, err error) {
	if res == nil {
		res = &agent.Result{}
	}
	res.APIVersion, res.Kind, res.Stage = agent.ResultAPIVersion, "Result", spec.Stage
	if res.Stage == "" {
		res.Stage = spec.Name
	}
	res.DryRun = env.DryRun
	res.StartedAt, res.FinishedAt = started, time.Now().UTC()
	res.ExitCode = agent.CodeOf(err)
	if errors.Is(err, context.Canceled) {
		res.ExitCode = agent.ExitInterrupted
	}
	res.OK = err == nil
	if err != nil && res.Summary == "" {
		res.Summary = secrets.Redact(err.Error())
	}
	if p := c.String("result"); p != "" {
		if werr := atomicfile.WriteJSON(p, redacted(res)); werr != nil {
			env.Log.Errorf("write result %s: %v", p, werr)
		}
	}
	if err != nil {
		if p := c.String("error-details"); p != "" {
			if werr := atomicfile.WriteJSON(p, agent.Details(spec.Stage, err)); werr != nil {
				env.Log.Errorf("write error details %s: %v", p, werr)
			}
		}
	}
	// A bare failure is said once, on stderr, by Run; -o json always gets the result.
	if err == nil || res.Outputs != nil || env.Output == "json" {
		printSummary(env.Out, env.Output, res)
	}
}

// redacted returns res with every string masked (through a JSON round trip).
func redacted(res *agent.Result) any {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(res); err != nil {
		return res
	}
	return json.RawMessage(secrets.Redact(strings.TrimSpace(b.String())))
}

func printSummary(w io.Writer, format string, res *agent.Result) {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		_ = enc.Encode(redacted(res))
		return
	}
	if res.Summary != "" {
		fmt.Fprintln(w, secrets.Redact(res.Summary))
	}
	// A multi-line summary is the command's own readable text; the outputs
	// stay in the result file and -o json.
	if res.Outputs == nil || strings.Contains(strings.TrimSpace(res.Summary), "\n") {
		return
	}
	js, err := json.Marshal(res.Outputs)
	if err != nil {
		return
	}
	var flat map[string]any
	if json.Unmarshal(js, &flat) != nil {
		return
	}
	lines := map[string]string{}
	flatten("", flat, lines)
	keys := make([]string, 0, len(lines))
	for k := range lines {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %s\n", k, secrets.Redact(lines[k]))
	}
}

func flatten(prefix string, v any, out map[string]string) {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			flatten(key, x, out)
		}
	case []any:
		js, _ := json.Marshal(t)
		out[prefix] = string(js)
	case string:
		out[prefix] = t
	default:
		js, _ := json.Marshal(t)
		out[prefix] = string(js)
	}
}

// deferRequired clears the Required mark of flags (urfave/cli checks it
// before the action, so before --params is read) and returns their names.
func deferRequired(flags []ucli.Flag) []string {
	var names []string
	for _, f := range flags {
		switch t := f.(type) {
		case *ucli.StringFlag:
			if t.Required {
				t.Required = false
				names = append(names, t.Name)
			}
		case *ucli.StringSliceFlag:
			if t.Required {
				t.Required = false
				names = append(names, t.Name)
			}
		case *ucli.IntFlag:
			if t.Required {
				t.Required = false
				names = append(names, t.Name)
			}
		}
	}
	return names
}

// onCommandLine reports whether one of names was given on the command line
// (not from its environment variable). Run keeps the arguments in the app's
// metadata; without them it falls back to c.IsSet, which counts the
// environment too.
func onCommandLine(c *ucli.Context, names []string) bool {
	argv, ok := c.App.Metadata["argv"].([]string)
	if !ok {
		return c.IsSet(names[0])
	}
	for _, a := range argv {
		if a == "--" {
			break
		}
		if len(a) < 2 || a[0] != '-' {
			continue
		}
		n, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		for _, name := range names {
			if n == name {
				return true
			}
		}
	}
	return false
}

// applyParams reads --params and sets every flag it names that the command
// line did not set. A value in the params file wins over the flag's
// environment variable (Jenkins sets BRANCH_NAME=PR-7 on a change request,
// while the step passes the target branch in the file).
func applyParams(c *ucli.Context) error {
	path := c.String("params")
	if path == "" {
		return nil
	}
	raw, err := config.ReadFileLimited(path, config.MaxConfigBytes)
	if err != nil {
		return err
	}
	var params map[string]any
	if err := json.Unmarshal(raw, &params); err != nil {
		return fmt.Errorf("%s: not a JSON object: %w", path, err)
	}
	known := map[string]bool{}
	for _, f := range c.Command.Flags {
		for _, n := range f.Names() {
			known[n] = true
		}
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !known[k] {
			return fmt.Errorf("%s: %q is not a flag of this command", path, k)
		}
		if k == "params" || onCommandLine(c, flagNames(c.Command.Flags, k)) {
			continue
		}
		var vals []string
		switch v := params[k].(type) {
		case nil:
			continue
		case []any:
			for _, x := range v {
				vals = append(vals, scalar(x))
			}
		case map[string]any:
			return fmt.Errorf("%s: %q must be a string, number, boolean or list, not an object", path, k)
		default:
			vals = []string{scalar(v)}
		}
		for _, s := range vals {
			if err := c.Set(k, s); err != nil {
				return fmt.Errorf("%s: %q: %q is not %s", path, k, s, kindOf(c.Command.Flags, k))
			}
		}
	}
	return nil
}

func scalar(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case float64:
		js, _ := json.Marshal(t)
		return string(js)
	default:
		return fmt.Sprint(t)
	}
}

// NewLogger makes the logrus logger of a command: text or JSON on w, secrets masked.
func NewLogger(w io.Writer, format, level string) (*logrus.Logger, error) {
	log := logrus.New()
	log.SetOutput(w)
	log.AddHook(secrets.Hook{})
	switch format {
	case "text", "":
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: time.RFC3339})
	case "json":
		log.SetFormatter(&logrus.JSONFormatter{})
	default:
		return nil, fmt.Errorf("unknown log format %q", format)
	}
	lvl, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, err
	}
	log.SetLevel(lvl)
	return log, nil
}

// Run runs app with args (args[0] is the program name) and returns the exit
// code. It cancels the context on SIGINT or SIGTERM, prints the error once to
// streams.Err, and never exits the process.
func Run(ctx context.Context, app *ucli.App, args []string, streams Streams) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	secrets.RegisterKnown(os.Getenv)
	secrets.RegisterEnvUserinfo(os.Environ())
	if app.Metadata == nil {
		app.Metadata = map[string]any{}
	}
	app.Metadata["streams"] = streams
	app.Metadata["argv"] = args[min(len(args), 1):]
	app.Writer, app.ErrWriter = streams.Out, streams.Err
	err := app.RunContext(ctx, FlagsFirst(app, args))
	if err == nil {
		return agent.ExitOK
	}
	var ae actionError
	if !errors.As(err, &ae) {
		sayError(streams.Err, app, args, agent.ExitUsage, err.Error(), "run '"+strings.Join(args[:min(len(args), 2)], " ")+" --help'")
		return agent.ExitUsage
	}
	code := agent.CodeOf(ae.err)
	if errors.Is(ae.err, context.Canceled) {
		code = agent.ExitInterrupted
	}
	fix := agent.FixOf(ae.err)
	sayError(streams.Err, app, args, code, ae.err.Error(), fix)
	return code
}

// sayError prints the final error once on w: as "<app>: error: …" and
// "  fix: …" lines, or, when the logs are JSON (--log-format json, or
// BRANCHML_LOG_FORMAT=json), as one more JSON log line, so that the log
// stays JSON to its last line.
func sayError(w io.Writer, app *ucli.App, args []string, code int, msg, fix string) {
	msg, fix = secrets.Redact(msg), secrets.Redact(fix)
	format, _ := app.Metadata["logFormat"].(string)
	if format == "" {
		format = logFormatOf(args)
	}
	if format == "json" {
		line := map[string]any{"level": "error", "time": time.Now().Format(time.RFC3339), "msg": app.Name + ": error: " + msg, "exitCode": code}
		if fix != "" {
			line["fix"] = fix
		}
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(line)
		return
	}
	fmt.Fprintf(w, "%s: error: %s\n", app.Name, msg)
	if fix != "" {
		fmt.Fprintf(w, "  fix: %s\n", fix)
	}
}

// logFormatOf is the --log-format the arguments (or BRANCHML_LOG_FORMAT)
// ask for, for errors found before the flags are parsed.
func logFormatOf(args []string) string {
	f := os.Getenv("BRANCHML_LOG_FORMAT")
	for i, a := range args {
		if a == "--" {
			break
		}
		if v, ok := strings.CutPrefix(a, "--log-format="); ok {
			f = v
		} else if a == "--log-format" && i+1 < len(args) {
			f = args[i+1]
		}
	}
	return f
}

// Main runs app on the process's arguments and exits with its code.
func Main(app *ucli.App) {
	os.Exit(Run(context.Background(), app, os.Args, StdStreams()))
}

// FlagsFirst moves the flags of the command that args name before its
// positional arguments, so that `lineage show ID --workspace ws` works like
// `lineage show --workspace ws ID` (urfave/cli v2 stops parsing flags at the
// first positional argument). A "--" ends the flags; args[0] is the program.
func FlagsFirst(app *ucli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	i := 1
	cmds := app.Commands
	var cmd *ucli.Command
	for i < len(args) {
		var next *ucli.Command
		for _, c := range cmds {
			if c.HasName(args[i]) {
				next = c
			}
		}
		if next == nil {
			break
		}
		cmd, cmds = next, next.Subcommands
		i++
	}
	if cmd == nil || len(cmd.Flags) == 0 {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*ucli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var flags, positional []string
	rest := args[i:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		if a == "--" {
			positional = append(positional, rest[j+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if takesValue[name] && j+1 < len(rest) {
			flags = append(flags, rest[j+1])
			j++
		}
	}
	if len(positional) == 0 {
		return args
	}
	out := append(append([]string{}, args[:i]...), flags...)
	return append(append(out, "--"), positional...)
}

func ctxOr(c *ucli.Context) context.Context {
	if c.Context != nil {
		return c.Context
	}
	return context.Background()
}

// headCommit is the HEAD commit of the git checkout at dir ("" = the
// working directory), or "" when dir is not a git checkout.
func headCommit(ctx context.Context, dir string) string {
	cmd := exec.CommandContext(ctx, "git", "rev-parse", "--verify", "--quiet", "HEAD")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// flagNames are the name and aliases of flag name.
func flagNames(flags []ucli.Flag, name string) []string {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f.Names()
			}
		}
	}
	return []string{name}
}

// kindOf describes the value flag name takes, for error messages.
func kindOf(flags []ucli.Flag, name string) string {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			switch f.(type) {
			case *ucli.BoolFlag:
				return "a boolean (true or false)"
			case *ucli.DurationFlag:
				return `a duration such as "30s" or "5m"`
			case *ucli.IntFlag, *ucli.Int64Flag, *ucli.UintFlag, *ucli.Uint64Flag:
				return "a whole number"
			case *ucli.Float64Flag:
				return "a number"
			}
		}
	}
	return "a valid value"
}
