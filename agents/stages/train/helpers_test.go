package train

import (
	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/storage"
)

func forgeWB(branch, path string, content []byte) forge.WriteBack {
	return forge.WriteBack{Branch: branch, Files: map[string][]byte{path: content}, Message: "branchml pipeline: lock for test"}
}

func storageSpec(name string) storage.VolumeSpec { return storage.VolumeSpec{Name: name, Size: "1Gi"} }
