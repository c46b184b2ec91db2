// Package deptest checks the import rules between doppel's components: the agent and its
// incoming engine import neither the CLI nor the client session, the wire protocol imports
// neither side, and the HTTP router imports no other doppel package. It holds only a test and
// owns nothing at run time.
package deptest
