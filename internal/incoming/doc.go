// Package incoming is the agent's half of incoming traffic: it owns, for the life of one agent,
// the listener inside the target's network namespace that redirected connections reach, the
// session's nftables table (created with NFT_TABLE_F_OWNER, so the kernel removes it when the
// agent's netlink socket closes, however the agent ends), and a goroutine per connection in
// flight that mirrors it, steals it, or routes its HTTP requests between the program and the
// target's own service.
package incoming
