package persist

// FenceBucket is fenceBucket, for the fence tests of package persist_test,
// which hold a channel's fence lock from a connection of their own.
var FenceBucket = fenceBucket
