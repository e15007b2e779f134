//go:build linux && !386

package connpool_test

// peerCloseBehindRecordsVisible: Linux's POLLRDHUP shows a peer's close
// even while its close_notify alert waits unread.
const peerCloseBehindRecordsVisible = true
