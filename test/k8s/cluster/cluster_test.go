package cluster_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/branchml/branchml/test/k8s/cluster"
	"github.com/branchml/branchml/test/k8s/k8stest"
)

func TestMain(m *testing.M) { k8stest.Main(m) }

// TestKubectl: Debian's kubectl uses the kubeconfig, and sees the storage
// objects the test bed installs.
func TestKubectl(t *testing.T) {
	c := k8stest.Shared(t)
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed (Debian: kubernetes-client)")
	}
	for _, args := range [][]string{
		{"get", "namespace", "default", "-o", "name"},
		{"get", "storageclass", cluster.StorageClass, "-o", "jsonpath={.provisioner}"},
		{"get", "volumesnapshotclass", cluster.SnapshotClass, "-o", "jsonpath={.driver}"},
		{"get", "crd", "tridentactionsnapshotrestores.trident.netapp.io", "-o", "name"},
	} {
		out, err := exec.Command(kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...).CombinedOutput()
		got := strings.TrimSpace(string(out))
		want := map[string]string{"namespace": "namespace/default", "storageclass": cluster.Driver, "volumesnapshotclass": cluster.Driver,
			"crd": "customresourcedefinition.apiextensions.k8s.io/tridentactionsnapshotrestores.trident.netapp.io"}[args[1]]
		if err != nil || got != want {
			t.Errorf("kubectl %s: %q, %v; want %q", strings.Join(args, " "), got, err, want)
		}
	}
}

const childEnv = "BRANCHML_K8S_CRASH_CHILD"

// TestCrashLeavesNothingRunning: a process that started a whole test bed
// is killed with SIGKILL (no cleanup runs); every process of the cluster
// is gone shortly after (Pdeathsig), and so are their process groups.
func TestCrashLeavesNothingRunning(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		child(t)
		return
	}
	k8stest.Shared(t) // only to build once and skip unless enabled
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashLeavesNothingRunning$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+t.TempDir())
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var pids map[string]int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if js, ok := strings.CutPrefix(sc.Text(), "PIDS "); ok {
			if err := json.Unmarshal([]byte(js), &pids); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if len(pids) < 8 {
		t.Fatalf("the child reported %d components: %v", len(pids), pids)
	}
	for name, pid := range pids {
		if syscall.Kill(pid, 0) != nil {
			t.Fatalf("%s (pid %d) is not running before the kill", name, pid)
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	deadline := time.Now().Add(15 * time.Second)
	for name, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("%s (pid %d) still runs 15 s after its parent was killed", name, pid)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for groupAlive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process group %d of %s still has live members", pid, name)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// stat returns the state and process group of pid from /proc/PID/stat.
func stat(pid string) (state string, pgrp int, ok bool) {
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "", 0, false
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // after "pid (comm)"
	if len(f) < 3 {
		return "", 0, false
	}
	pgrp, _ = strconv.Atoi(f[2])
	return f[0], pgrp, true
}

// alive reports whether pid runs (a zombie, reaped by init soon, is not).
func alive(pid int) bool {
	st, _, ok := stat(strconv.Itoa(pid))
	return ok && st != "Z"
}

// groupAlive reports whether a live process is in process group pgid.
func groupAlive(pgid int) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if st, g, ok := stat(e.Name()); ok && g == pgid && st != "Z" {
			return true
		}
	}
	return false
}

func child(t *testing.T) {
	c, err := cluster.Start(context.Background(), cluster.Options{Dir: os.Getenv(childEnv)})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(c.PIDs())
	os.Stdout.WriteString("PIDS " + string(js) + "\n")
	time.Sleep(time.Hour) // killed by the parent
}

// TestStopStopsEverything: Stop ends every component.
func TestStopStopsEverything(t *testing.T) {
	k8stest.Shared(t)
	c, err := cluster.Start(context.Background(), cluster.Options{Dir: t.TempDir(), NoStorage: true})
	if err != nil {
		t.Fatal(err)
	}
	pids := c.PIDs()
	c.Stop()
	for name, pid := range pids {
		if alive(pid) {
			t.Errorf("%s (pid %d) runs after Stop", name, pid)
		}
	}
	if len(pids) != 4 {
		t.Errorf("components %v, want etcd, kube-apiserver, kube-controller-manager, kube-scheduler", pids)
	}
}
