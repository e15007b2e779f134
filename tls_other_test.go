//go:build !linux || 386

package connpool_test

// peerCloseBehindRecordsVisible is false: without POLLRDHUP a close behind
// unread records waits for the conn's next read.
const peerCloseBehindRecordsVisible = false
