// Package deptest checks the import rules between doppel's components: the agent imports
// neither the CLI nor the client session, and the wire protocol imports neither side. It holds
// only a test and owns nothing at run time.
package deptest
