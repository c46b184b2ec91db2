// Package config owns doppel's configuration: the file format (YAML, or JSON
// read by the same parser), its checker with line-accurate problems, its JSON
// Schema, the `doppel exec` flags that override it (the Kubernetes agent's
// included, but not kubectl's own --kubeconfig, --context and --namespace,
// which the CLI registers), and the routing rules
// that say which outgoing connections leave from the target ([Matcher]),
// which of the target's ports a listening port of the program receives
// ([Incoming.TargetPort]) and which of the program's file paths are the
// target's ([PathRules]). The HTTP filter of steal mode is only checked
// here; the agent's package httproute applies it.
//
// Everything here is plain data and pure functions, but for reading $HOME to
// expand a leading "~/" in kubernetes.kubeconfig. The package opens no file
// descriptors beyond the single read in [Load], starts no goroutines and keeps
// no state between calls; a [Config], a [Matcher] and [PathRules] live as long
// as the caller holds them and are safe for concurrent reads once built.
package config
