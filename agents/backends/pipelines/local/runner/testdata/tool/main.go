// Command tool is the tiny program the runner's tests build into an image.
package main

import (
	"fmt"
	"os"
	"os/exec"
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
	default:
		fail(fmt.Errorf("unknown command %q", os.Args[1]))
	}
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
