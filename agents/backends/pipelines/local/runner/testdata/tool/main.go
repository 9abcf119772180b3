// Command tool is the tiny program the runner's tests build into an image.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tool CMD ARGS")
		os.Exit(2)
	}
	a := os.Args[2:]
	switch os.Args[1] {
	case "true":
	case "produce": // TEXT N OUT WORDFILE
		n, err := strconv.Atoi(a[1])
		if err != nil {
			fail(err)
		}
		must(os.WriteFile(a[2], []byte(strings.Repeat(a[0]+"\n", n)), 0o644))
		must(os.WriteFile(a[3], []byte("wordy"), 0o644))
		fmt.Println("produced", n, "lines")
	case "consume": // IN WORD SUFFIX OUT
		in, err := os.ReadFile(a[0])
		if err != nil {
			fail(err)
		}
		must(os.WriteFile(a[3], []byte(strings.ToUpper(string(in))+a[1]+a[2]), 0o644))
	case "write": // OUT TEXT...
		must(os.WriteFile(a[0], []byte(strings.Join(a[1:], " ")), 0o644))
	case "mkdir": // DIR FILE TEXT
		must(os.MkdirAll(a[0], 0o755))
		must(os.WriteFile(a[0]+"/"+a[1], []byte(a[2]), 0o644))
	case "train": // MODELDIR METRICSOUT METRICSJSON DATASET
		data, err := os.ReadFile(a[3])
		if err != nil {
			fail(err)
		}
		must(os.MkdirAll(a[0], 0o755))
		must(os.WriteFile(a[0]+"/model.json", data, 0o644))
		must(os.WriteFile(a[1], []byte(a[2]), 0o644))
		fmt.Println("trained")
	case "env": // NAME OUT
		must(os.WriteFile(a[1], []byte(os.Getenv(a[0])), 0o644))
	case "fail": // CODE
		fmt.Println("line one")
		fmt.Fprintln(os.Stderr, "boom: something broke")
		code, _ := strconv.Atoi(a[0])
		os.Exit(code)
	case "flaky": // COUNTER N: fail until run N times
		b, _ := os.ReadFile(a[0])
		c, _ := strconv.Atoi(string(b))
		c++
		must(os.WriteFile(a[0], []byte(strconv.Itoa(c)), 0o644))
		if want, _ := strconv.Atoi(a[1]); c < want {
			fmt.Println("flaky attempt", c)
			os.Exit(1)
		}
	case "spawn": // DURATION PIDFILE: a child sleeps; its pid goes to PIDFILE
		child := exec.Command(os.Args[0], "sleep", a[0])
		must(child.Start())
		must(os.WriteFile(a[1], []byte(strconv.Itoa(child.Process.Pid)), 0o644))
		must(child.Wait())
	case "sleep": // DURATION [PIDFILE]
		d, _ := time.ParseDuration(a[0])
		if len(a) > 1 {
			must(os.WriteFile(a[1], []byte(strconv.Itoa(os.Getpid())), 0o644))
		}
		time.Sleep(d)
	case "args": // OUT ARGS...: the arguments as a JSON list
		b, _ := json.Marshal(a[1:])
		must(os.WriteFile(a[0], b, 0o644))
	case "copy": // IN OUT
		b, err := os.ReadFile(a[0])
		if err != nil {
			fail(err)
		}
		must(os.WriteFile(a[1], b, 0o644))
	case "catlist": // ARTIFACTLISTJSON OUT: the artifacts' contents joined by ","
		var l struct {
			Artifacts []struct{ URI string }
		}
		must(json.Unmarshal([]byte(a[0]), &l))
		var parts []string
		for _, x := range l.Artifacts {
			b, err := os.ReadFile(x.URI)
			if err != nil {
				fail(err)
			}
			parts = append(parts, string(b))
		}
		must(os.WriteFile(a[1], []byte(strings.Join(parts, ",")), 0o644))
	case "waitfor": // FILE: wait until FILE exists (at most 120 s)
		for i := 0; i < 12000; i++ {
			if _, err := os.Stat(a[0]); err == nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		fail(fmt.Errorf("%s never appeared", a[0]))
	case "append": // FILE TEXT: append a line
		f, err := os.OpenFile(a[0], os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fail(err)
		}
		fmt.Fprintln(f, a[1])
		f.Close()
	case "whoami": // OUT: uid:gid
		must(os.WriteFile(a[0], []byte(fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())), 0o644))
	case "emulate": // EXECUTORINPUTJSON: what the KFP SDK's executor does
		emulate(a[0])
	default:
		fail(fmt.Errorf("unknown command %q", os.Args[1]))
	}
}

// emulate plays the KFP SDK's executor: it reads the executor input, sets
// every output parameter to "k=v;..." of the inputs, writes each output
// artifact with the same text and metadata {"inputs": N}, and writes
// executor_output.json.
func emulate(js string) {
	var in struct {
		Inputs struct {
			ParameterValues map[string]any `json:"parameterValues"`
		} `json:"inputs"`
		Outputs struct {
			Parameters map[string]struct {
				OutputFile string `json:"outputFile"`
			} `json:"parameters"`
			Artifacts map[string]struct {
				Artifacts []struct {
					URI string `json:"uri"`
				} `json:"artifacts"`
			} `json:"artifacts"`
			OutputFile string `json:"outputFile"`
		} `json:"outputs"`
	}
	must(json.Unmarshal([]byte(js), &in))
	var keys []string
	for k := range in.Inputs.ParameterValues {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var kv []string
	for _, k := range keys {
		b, _ := json.Marshal(in.Inputs.ParameterValues[k])
		kv = append(kv, k+"="+string(b))
	}
	text := strings.Join(kv, ";")
	out := map[string]any{"parameterValues": map[string]any{}, "artifacts": map[string]any{}}
	for n := range in.Outputs.Parameters {
		out["parameterValues"].(map[string]any)[n] = text
	}
	for n, al := range in.Outputs.Artifacts {
		uri := al.Artifacts[0].URI
		must(os.WriteFile(uri, []byte(text), 0o644))
		out["artifacts"].(map[string]any)[n] = map[string]any{"artifacts": []any{map[string]any{"name": n, "uri": uri, "metadata": map[string]any{"inputs": len(keys)}}}}
	}
	b, _ := json.Marshal(out)
	must(os.WriteFile(in.Outputs.OutputFile, b, 0o644))
}

func must(err error) {
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tool:", err)
	os.Exit(1)
}
