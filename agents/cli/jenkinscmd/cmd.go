package jenkinscmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/backends/jenkins"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/internal/secrets"
)

// Command returns the `jenkins` command group.
func Command() *ucli.Command {
	return cli.Command(cli.Spec{
		Name:  "jenkins",
		Usage: "seed the Jenkins jobs, trigger branch builds, show their status and console",
		Description: "Talks to Jenkins' REST API as JENKINS_USER with the API token in JENKINS_API_TOKEN\n" +
			"(or the file named by JENKINS_API_TOKEN_FILE); JENKINS_URL or --url names the controller.",
		Subcommands: []*ucli.Command{seedCommand(), triggerCommand(), statusCommand(), logsCommand(), scriptHashCommand()},
	})
}

func connFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "url", EnvVars: []string{"JENKINS_URL"}, Usage: "the Jenkins `URL`, e.g. https://ci.example.com/"},
		&ucli.DurationFlag{Name: "poll-interval", Value: jenkins.DefaultPollInterval, Usage: "how often to poll the queue and the console"},
	}
}

func jobFlags(jobUsage string) []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "job", Required: true, Usage: jobUsage},
		&ucli.StringFlag{Name: "branch", Usage: "the branch `NAME` of a multibranch job (e.g. training, feature/x, PR-7)"},
	}
}

// client makes the Jenkins client from --url, JENKINS_USER and the API token.
func client(e *cli.Env) (*jenkins.Client, error) {
	u := e.CLI.String("url")
	if u == "" {
		return nil, agent.Usagef("set JENKINS_URL or pass --url https://ci.example.com/", "no Jenkins URL")
	}
	user := os.Getenv("JENKINS_USER")
	token, err := secrets.Get("JENKINS_API_TOKEN")
	if err != nil {
		return nil, agent.Usage("read the Jenkins API token", err, "point JENKINS_API_TOKEN_FILE at a readable file")
	}
	if user != "" && token == "" {
		return nil, agent.Usagef("set JENKINS_API_TOKEN (or JENKINS_API_TOKEN_FILE) to an API token of "+user,
			"JENKINS_USER is set but no API token")
	}
	if user == "" && token != "" {
		return nil, agent.Usagef("set JENKINS_USER to the token's user", "an API token without JENKINS_USER")
	}
	c, err := jenkins.New(u, jenkins.WithAuth(user, token), jenkins.WithPollInterval(e.CLI.Duration("poll-interval")))
	if err != nil {
		return nil, agent.Usage("Jenkins client", err, "pass --url http(s)://host[/prefix]")
	}
	return c, nil
}

// classify turns a Jenkins error into the CLI's exit codes: bad credentials,
// permissions and unknown jobs are usage errors (nothing changed), the rest
// stage failures; the fix comes from the error.
func classify(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var ae *jenkins.APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
			return agent.Usage(what, err, ae.Fix())
		}
		return agent.Failed(what, err, ae.Fix())
	}
	var ce *jenkins.CancelledError
	if errors.As(err, &ce) {
		return agent.Failed(what, err, "someone cancelled the queued build in Jenkins; trigger it again")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return agent.Failed(what, err, "raise --timeout, or look at the Jenkins queue")
	}
	return agent.Failed(what, err, "check that JENKINS_URL answers")
}

// resultError maps a finished build's result to the exit codes: UNSTABLE is
// a gate (3), FAILURE, ABORTED and NOT_BUILT a failure (1).
func resultError(st *jenkins.BuildStatus) error {
	switch st.Result {
	case "SUCCESS", "":
		return nil
	case "UNSTABLE":
		return agent.Gate("build "+st.URL, &jenkins.BuildFailedError{URL: st.URL, Result: st.Result}, "see the console: a gate was not met or a rollout rolled back")
	}
	return agent.Failed("build "+st.URL, &jenkins.BuildFailedError{URL: st.URL, Result: st.Result}, "see the console with 'branchml jenkins logs'")
}

// follow waits for queue item id's build, streams its console to w and
// returns its final status.
func follow(e *cli.Env, c *jenkins.Client, job, branch string, id int64, w io.Writer) (*jenkins.BuildStatus, error) {
	n, err := c.WaitForBuild(e.Ctx, id, func(why string) { e.Log.Infof("queue item %d waiting: %s", id, why) })
	if err != nil {
		return nil, classify("wait for the build", err)
	}
	e.Log.Infof("queue item %d started build #%d", id, n)
	st, err := c.StreamLog(e.Ctx, job, branch, n, w)
	if err != nil {
		return nil, classify("follow the build", err)
	}
	return st, nil
}

func consoleWriter(e *cli.Env) io.Writer {
	if e.Output == "json" {
		return e.Log.Out // keep stdout for the JSON summary
	}
	return e.Out
}

func seedCommand() *ucli.Command {
	flags := append(connFlags(),
		&ucli.StringFlag{Name: "job", Value: "branchml-seed", Usage: "the seed job's `PATH` (folders separated by /; they must exist)"},
		&ucli.StringFlag{Name: "library-repo", EnvVars: []string{"BRANCHML_LIBRARY_REPO"}, Usage: "git `URL` of the branchml shared library (holds jobs/)"},
		&ucli.StringFlag{Name: "library-branch", Value: "main", Usage: "the library `BRANCH` the seed job runs"},
		&ucli.StringFlag{Name: "credentials-id", Usage: "Jenkins credential `ID` to clone the library with (none: public)"},
		&ucli.BoolFlag{Name: "no-build", Usage: "only create or update the seed job; do not run it"},
		&ucli.BoolFlag{Name: "wait", Usage: "wait for the seed build, stream its console and fail when it fails"},
	)
	return cli.Command(cli.Spec{
		Name: "seed", Usage: "create or update the seed job (config.xml) and run it", Stage: "jenkins", Flags: flags,
		Run: func(e *cli.Env) (*agent.Result, error) {
			job := e.CLI.String("job")
			xml, err := jenkins.SeedJob{Repo: e.CLI.String("library-repo"), Branch: e.CLI.String("library-branch"),
				CredentialsID: e.CLI.String("credentials-id")}.ConfigXML()
			if err != nil {
				return nil, agent.Usage("seed job", err, "pass --library-repo or set BRANCHML_LIBRARY_REPO")
			}
			c, err := client(e)
			if err != nil {
				return nil, err
			}
			version, err := c.Ping(e.Ctx)
			if err != nil {
				return nil, classify("connect to Jenkins", err)
			}
			e.Log.Infof("Jenkins %s", version)
			action, err := c.EnsureJob(e.Ctx, job, xml, e.DryRun)
			if err != nil {
				return nil, classify("seed job "+job, err)
			}
			out := map[string]any{"job": job, "action": string(action), "jenkinsVersion": version}
			build := !e.CLI.Bool("no-build")
			if e.DryRun {
				summary := fmt.Sprintf("would %s seed job %s", verb(action), job)
				if build {
					summary += " and run it"
				}
				return &agent.Result{Summary: summary, Outputs: out}, nil
			}
			summary := fmt.Sprintf("seed job %s %s", job, action)
			if !build {
				return &agent.Result{Summary: summary, Outputs: out}, nil
			}
			id, err := c.Trigger(e.Ctx, job, "", nil)
			if err != nil {
				return nil, classify("run seed job "+job, err)
			}
			out["queueId"] = id
			summary += fmt.Sprintf("; queued as item %d", id)
			if !e.CLI.Bool("wait") {
				return &agent.Result{Summary: summary, Outputs: out}, nil
			}
			st, err := follow(e, c, job, "", id, consoleWriter(e))
			if err != nil {
				return nil, err
			}
			out["number"], out["url"], out["result"] = st.Number, st.URL, st.Result
			res := &agent.Result{Summary: fmt.Sprintf("%s; build #%d %s", summary, st.Number, st.Result), Outputs: out,
				Links: []agent.Link{{Name: "seed build", URL: st.URL}}}
			return res, resultError(st)
		},
	})
}

func verb(a jenkins.Action) string {
	switch a {
	case jenkins.Created:
		return "create"
	case jenkins.Updated:
		return "update"
	}
	return "keep (unchanged)"
}

func triggerCommand() *ucli.Command {
	flags := append(connFlags(), jobFlags("the multibranch job `PATH`, folders separated by / (e.g. ml/djia30)")...)
	flags = append(flags,
		&ucli.StringSliceFlag{Name: "param", Usage: "a build parameter `KEY=VALUE` (repeatable; uses buildWithParameters)"},
		&ucli.BoolFlag{Name: "wait", Usage: "wait for the build number, stream the console and report the result"},
	)
	return cli.Command(cli.Spec{
		Name: "trigger", Usage: "trigger a build of a branch of a multibranch job (without --branch: scan the job for branches)", Stage: "jenkins", Flags: flags,
		Run: func(e *cli.Env) (*agent.Result, error) {
			job, branch := e.CLI.String("job"), e.CLI.String("branch")
			params := map[string]string{}
			for _, kv := range e.CLI.StringSlice("param") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return nil, agent.Usagef("give --param KEY=VALUE", "bad --param %q", kv)
				}
				params[k] = v
			}
			if _, err := jenkins.ItemPath(job, branch); err != nil {
				return nil, agent.Usage("job path", err, "pass --job folder/job and --branch NAME")
			}
			c, err := client(e)
			if err != nil {
				return nil, err
			}
			out := map[string]any{"job": job, "branch": branch}
			if e.DryRun {
				return &agent.Result{Summary: fmt.Sprintf("would trigger %s", target(job, branch)), Outputs: out}, nil
			}
			id, err := c.Trigger(e.Ctx, job, branch, params)
			if err != nil {
				return nil, classify("trigger "+target(job, branch), err)
			}
			if id == 0 {
				// A multibranch job without --branch: Jenkins scans it for
				// branches and pull requests, and builds what changed.
				out["scan"] = true
				if e.CLI.Bool("wait") {
					e.Log.Warnf("a branch indexing has no build to wait for; trigger a branch with --branch NAME to follow its build")
				}
				return &agent.Result{Summary: fmt.Sprintf("scheduled a branch indexing (scan) of %s; branches with new commits build by themselves", job), Outputs: out}, nil
			}
			out["queueId"] = id
			if !e.CLI.Bool("wait") {
				return &agent.Result{Summary: fmt.Sprintf("queued %s as item %d", target(job, branch), id), Outputs: out}, nil
			}
			st, err := follow(e, c, job, branch, id, consoleWriter(e))
			if err != nil {
				return nil, err
			}
			out["number"], out["url"], out["result"] = st.Number, st.URL, st.Result
			return &agent.Result{Summary: fmt.Sprintf("%s build #%d %s", target(job, branch), st.Number, st.Result), Outputs: out,
				Links: []agent.Link{{Name: "build", URL: st.URL}}}, resultError(st)
		},
	})
}

func target(job, branch string) string {
	if branch == "" {
		return job
	}
	return job + " branch " + branch
}

func numberFlag() ucli.Flag {
	return &ucli.Int64Flag{Name: "number", Usage: "the build `NUMBER` (0: the last build)"}
}

func statusCommand() *ucli.Command {
	flags := append(connFlags(), jobFlags("the job `PATH`, folders separated by /")...)
	flags = append(flags, numberFlag())
	return cli.Command(cli.Spec{
		Name: "status", Usage: "show a build's state and result", Stage: "jenkins", Flags: flags,
		Run: func(e *cli.Env) (*agent.Result, error) {
			job, branch := e.CLI.String("job"), e.CLI.String("branch")
			c, err := client(e)
			if err != nil {
				return nil, err
			}
			st, err := c.Status(e.Ctx, job, branch, e.CLI.Int64("number"))
			if err != nil {
				return nil, classify("status of "+target(job, branch), err)
			}
			state := st.Result
			if st.Building {
				state = "BUILDING"
			}
			return &agent.Result{Summary: fmt.Sprintf("%s #%d %s", target(job, branch), st.Number, state), Outputs: st,
				Links: []agent.Link{{Name: "build", URL: st.URL}}}, nil
		},
	})
}

func logsCommand() *ucli.Command {
	flags := append(connFlags(), jobFlags("the job `PATH`, folders separated by /")...)
	flags = append(flags, numberFlag())
	return cli.Command(cli.Spec{
		Name: "logs", Usage: "stream a build's console until it ends; exit with its result", Stage: "jenkins", Flags: flags,
		Run: func(e *cli.Env) (*agent.Result, error) {
			job, branch := e.CLI.String("job"), e.CLI.String("branch")
			c, err := client(e)
			if err != nil {
				return nil, err
			}
			started := time.Now()
			st, err := c.StreamLog(e.Ctx, job, branch, e.CLI.Int64("number"), consoleWriter(e))
			if err != nil {
				return nil, classify("console of "+target(job, branch), err)
			}
			e.Log.Debugf("followed the console for %s", time.Since(started).Round(time.Millisecond))
			return &agent.Result{Summary: fmt.Sprintf("%s #%d %s", target(job, branch), st.Number, st.Result), Outputs: st,
				Links: []agent.Link{{Name: "build", URL: st.URL}}}, resultError(st)
		},
	})
}

func scriptHashCommand() *ucli.Command {
	return cli.Command(cli.Spec{
		Name: "script-hash", ArgsUsage: "FILE...", Stage: "jenkins",
		Usage: "print the script-approval hash of Job DSL scripts (JCasC security.scriptApproval.approvedScriptHashes)",
		Description: "The seed job runs jobs/multibranch.groovy outside the Groovy sandbox, so Jenkins runs it only\n" +
			"once an administrator approved it (Manage Jenkins > In-process Script Approval) or its hash\n" +
			"is listed in JCasC under security.scriptApproval.approvedScriptHashes. Each edit of the\n" +
			"script needs a new hash.",
		Run: func(e *cli.Env) (*agent.Result, error) {
			files := e.CLI.Args().Slice()
			if len(files) == 0 {
				return nil, agent.Usagef("give the Job DSL script, e.g. 'branchml jenkins script-hash jobs/multibranch.groovy'", "no file")
			}
			out := map[string]string{}
			var lines []string
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					return nil, agent.Usage("read "+f, err, "give the path of a Job DSL script")
				}
				h := jenkins.ScriptApprovalHash(b)
				out[f] = h
				lines = append(lines, "- \""+h+"\" # "+f)
			}
			if e.Output == "json" {
				return &agent.Result{Summary: fmt.Sprintf("%d script hash(es)", len(files)), Outputs: out}, nil
			}
			return &agent.Result{Summary: strings.Join(lines, "\n")}, nil
		},
	})
}
