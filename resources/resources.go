// Package resources embeds the shared library's resources that the agents
// read too: the JSON Schema of branchml.yaml and its built-in defaults.
// Jenkins reads the same files with libraryResource.
package resources

import "embed"

// FS holds schema/branchml.schema.json (JSON Schema 2020-12) and
// defaults/branchml.defaults.yaml (the lowest configuration layer), and
// kubernetes/storage-rbac.yaml (the storage backend's permissions).
//
//go:embed schema/*.json defaults/*.yaml kubernetes/*.yaml
var FS embed.FS

// SchemaPath and DefaultsPath are the paths of those files inside FS.
const (
	SchemaPath   = "schema/branchml.schema.json"
	DefaultsPath = "defaults/branchml.defaults.yaml"
	// StorageRBACPath is the ServiceAccount, roles and bindings the trident
	// storage backend needs (namespace "default" to be replaced).
	StorageRBACPath = "kubernetes/storage-rbac.yaml"
)
