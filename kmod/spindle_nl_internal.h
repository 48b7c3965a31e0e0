/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the module's files share: the instances, the requests, the one
 * mutex that guards them, and the functions between core.c (requests,
 * routing, deadlines, breaker, cache, rate limit), genl.c (the family,
 * messages, socket release, heartbeats) and debugfs.c (the test files).
 */
#ifndef SPINDLE_NL_INTERNAL_H
#define SPINDLE_NL_INTERNAL_H

#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/skbuff.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <net/genetlink.h>
#include "spindle_nl_api.h"

#define SP_NAME_LEN (SPINDLE_NL_LIMIT_PIPELINE_NAME + 1)
#define SP_TEXT_LEN (SPINDLE_NL_LIMIT_ERROR_TEXT + 1)

enum sp_breaker { SP_CLOSED, SP_OPEN, SP_HALF_OPEN };

struct sp_instance {
	struct list_head node;
	u32 portid;
	u64 instance_id;
	u32 version;
	u64 features;
	u32 window;
	u32 inflight;
	u64 sent;
	u64 answered;
	int n_serves;
	char serves[SPINDLE_NL_LIMIT_SERVES][SP_NAME_LEN];
	u32 dims[SPINDLE_NL_LIMIT_SERVES];
	bool draining;
	enum sp_breaker breaker;
	u32 consecutive_timeouts;
	unsigned long opened_at;
	bool probe_out;
	u32 missed_heartbeats;
	u64 heartbeat_seq;
};

struct sp_request {
	u32 id;
	char pipeline[SP_NAME_LEN];
	char *text;
	size_t len;
	u8 priority;
	unsigned long deadline;
	u32 sender;
	spindle_nl_done_t done;
	void *context;
	struct sp_instance *owner;	/* NULL while queued */
	bool probe;
	struct list_head queue_node;	/* in a priority queue while queued */
	struct list_head done_node;	/* on a completion list once claimed */
	/* the result */
	int error;
	u32 dims;
	__le32 *vector;
	bool cached;
	char reason[SP_TEXT_LEN];
};

/* A message built under the lock, sent after it. */
struct sp_send {
	struct list_head node;
	struct sk_buff *skb;
	u32 portid;
	/* for a REQUEST: which request, so a failed send fails it */
	u32 request_id;
};

/* Work collected under the lock and done after it. */
struct sp_batch {
	struct list_head completions;
	struct list_head sends;
};

static inline void sp_batch_init(struct sp_batch *batch)
{
	INIT_LIST_HEAD(&batch->completions);
	INIT_LIST_HEAD(&batch->sends);
}

extern struct mutex sp_lock;
extern struct list_head sp_instances;
extern u64 sp_counters[SPINDLE_NL_STAT_MAX + 1];
extern wait_queue_head_t sp_instances_changed;
extern struct work_struct sp_dispatch_work;

/* module parameters */
extern unsigned int sp_max_window, sp_queue_cap, sp_high_reserve;
extern unsigned int sp_breaker_threshold, sp_breaker_cooldown_ms;
extern unsigned int sp_heartbeat_ms, sp_heartbeat_misses;
extern unsigned int sp_rate_limit, sp_rate_burst, sp_cache_entries;

/* core.c */
int sp_core_init(void);
void sp_core_exit(void);
void sp_finish_batch(struct sp_batch *batch);
struct sp_instance *sp_find_instance(u32 portid);
unsigned int sp_instance_count(void);
void sp_dispatch_locked(struct sp_batch *batch);
void sp_remove_instance_locked(struct sp_instance *instance, int error,
			       const char *why, struct sp_batch *batch);
int sp_complete_locked(u32 id, u32 from_portid, int error, const __le32 *vector,
		       u32 dims, const char *reason, struct sp_batch *batch);
void sp_cache_clear_locked(void);
u64 sp_queued_locked(void);
u64 sp_inflight_locked(void);

/* genl.c */
int sp_genl_init(void);
void sp_genl_exit(void);
struct sk_buff *sp_build_request(const struct sp_request *request, u32 deadline_ms);
struct sk_buff *sp_build_cancel(u32 id);
struct sk_buff *sp_build_heartbeat(u64 seq);
int genlmsg_unicast_checked(struct sk_buff *skb, u32 portid);
void sp_event(u8 kind, const struct sp_instance *instance);

/* debugfs.c */
int sp_debugfs_init(void);
void sp_debugfs_exit(void);

#endif
