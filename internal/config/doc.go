// Package config owns doppel's configuration: the file format (YAML, or JSON
// read by the same parser), its checker with line-accurate problems, its JSON
// Schema, the `doppel exec` flags that override it, and the routing rule that
// says which outgoing connections leave from the target.
//
// Everything here is plain data and pure functions. The package opens no file
// descriptors beyond the single read in [Load], starts no goroutines and keeps
// no state between calls; a [Config] and a [Matcher] live as long as the
// caller holds them and are safe for concurrent reads once built.
package config
