/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The in-kernel API of spindle_netlink: other kernel code submits a text
 * to a Spindle pipeline and gets the vector or an error, exactly once.
 *
 * Context: every function may sleep (process context only). The done
 * callback runs in process context without the module's locks held; it
 * may run before spindle_nl_submit() returns (a cache hit).
 */
#ifndef SPINDLE_NL_API_H
#define SPINDLE_NL_API_H

#include <linux/types.h>
#include "spindle_netlink.h"

struct spindle_nl_result {
	u64 id;
	/* 0, or a negative errno: -ETIMEDOUT, -ECONNRESET, -ECANCELED, -EBUSY,
	 * -EIO, ... (docs/netlink-protocol.md, "Error codes"). */
	int error;
	/* Dimensions and the raw little-endian f32 values; valid only during
	 * the callback (copy what you keep). NULL when error != 0. */
	u32 dims;
	const __le32 *vector;
	/* The daemon's or the module's reason, NUL-terminated. */
	const char *text;
	/* Answered from the result cache. */
	bool cached;
};

typedef void (*spindle_nl_done_t)(void *context, const struct spindle_nl_result *result);

struct spindle_nl_submission {
	const char *pipeline;		/* 1..63 bytes, NUL-terminated */
	const char *text;		/* UTF-8, 1..16384 bytes */
	size_t len;
	u8 priority;			/* SPINDLE_NL_PRIO_* */
	u32 deadline_ms;		/* 1..600000 */
	u32 sender;			/* rate limiting key (e.g. a tgid) */
	spindle_nl_done_t done;
	void *context;
};

/*
 * Submits a request. Returns 0 when accepted: done() will be called exactly
 * once (with the vector, or an error such as -ETIMEDOUT at the deadline).
 * Returns a negative errno when refused at once, and done() is not called:
 * -ENOTCONN (no daemon), -ENOENT (no instance serves the pipeline),
 * -EHOSTDOWN (every serving instance's breaker is open), -EBUSY (queue
 * full), -EAGAIN (sender over its rate limit), -EINVAL, -ENOMEM.
 */
int spindle_nl_submit(const struct spindle_nl_submission *submission, u64 *id);

/*
 * Submits and waits for the answer; copies at most max_dims values into
 * vector and sets *dims. Returns 0 or the request's negative errno.
 */
int spindle_nl_call(const struct spindle_nl_submission *submission,
		    __le32 *vector, u32 max_dims, u32 *dims);

/* Cancels a request; its done() gets -ECANCELED. -ENOENT if already done. */
int spindle_nl_cancel(u64 id);

#endif
