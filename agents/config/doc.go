// Package config loads branchml.yaml in layers (built-in defaults <
// branchml.yaml < BRANCHML_* environment < --set flags), validates it
// against resources/schema/branchml.schema.json and returns the typed
// Config, with errors that name the source, the field, the value and the fix.
// It also holds the size limits of every input the agents read
// (MaxConfigBytes …, ReadFileLimited), since every package may import it.
//
// It imports nothing of ours but the embedded schema and defaults of
// resources/.
package config
