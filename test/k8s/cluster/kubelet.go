package cluster

import (
	"context"
	"errors"
)

// startKubelet would run containerd and the kubelet built with the control
// plane (BinDir/kubelet). Not wired yet: the storage tests need no node;
// the serving tests will add it.
func (c *Cluster) startKubelet(context.Context, []string) error {
	return errors.New("cluster: Options.Kubelet is not supported yet (the kubelet binary is built into BinDir)")
}
