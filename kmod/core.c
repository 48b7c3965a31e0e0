// SPDX-License-Identifier: GPL-2.0
/*
 * Requests and instances: ids in an xarray, exactly-once completion (the
 * xa_erase under sp_lock is the claim), routing to the least loaded
 * instance that serves the pipeline, priority queues with a reserve for
 * high priority, deadlines (one delayed work at the earliest deadline), a
 * circuit breaker per instance, a per-sender rate limit and a bounded
 * result cache. Everything runs in process context under one mutex; done
 * callbacks and sends happen after it is released (sp_finish_batch).
 */
#include <linux/jhash.h>
#include <linux/jiffies.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>
#include "spindle_nl_internal.h"

DEFINE_MUTEX(sp_lock);
LIST_HEAD(sp_instances);
u64 sp_counters[SPINDLE_NL_STAT_MAX + 1];
DECLARE_WAIT_QUEUE_HEAD(sp_instances_changed);

static DEFINE_XARRAY_ALLOC1(sp_requests);
static u32 sp_next_id;
static struct list_head sp_queues[3];
static u64 sp_queued;
static unsigned int sp_wrr;
static unsigned long sp_overload_event_at;
static struct delayed_work sp_sweep_work;
static bool sp_sweep_armed;
static unsigned long sp_sweep_at;
static bool sp_stopping;

/* Per-sender token buckets (milli-tokens), replaced least recently used. */
struct sp_bucket {
	bool used;
	u32 sender;
	u64 tokens;
	unsigned long stamp;
};
static struct sp_bucket sp_buckets[64];

struct sp_cache_entry {
	bool used;
	u32 hash;
	char pipeline[SP_NAME_LEN];
	char *text;
	size_t len;
	__le32 *vector;
	u32 dims;
	u64 stamp;
};
static struct sp_cache_entry *sp_cache;
static unsigned int sp_cache_size;
static u64 sp_cache_clock;

static bool sp_serves(const struct sp_instance *instance, const char *pipeline)
{
	int i;

	for (i = 0; i < instance->n_serves; i++)
		if (!strcmp(instance->serves[i], pipeline))
			return true;
	return false;
}

struct sp_instance *sp_find_instance(u32 portid)
{
	struct sp_instance *instance;

	list_for_each_entry(instance, &sp_instances, node)
		if (instance->portid == portid)
			return instance;
	return NULL;
}

unsigned int sp_instance_count(void)
{
	struct sp_instance *instance;
	unsigned int count = 0;

	list_for_each_entry(instance, &sp_instances, node)
		count++;
	return count;
}

u64 sp_queued_locked(void)
{
	return sp_queued;
}

u64 sp_inflight_locked(void)
{
	struct sp_instance *instance;
	u64 inflight = 0;

	list_for_each_entry(instance, &sp_instances, node)
		inflight += instance->inflight;
	return inflight;
}

/* The cooldown is read when used, so a changed parameter applies at once. */
static bool sp_cooled_down(const struct sp_instance *instance)
{
	return !time_before(jiffies, instance->opened_at + msecs_to_jiffies(sp_breaker_cooldown_ms));
}

/* Whether the breaker lets a request through now (open turns half open
 * once its cooldown passed; half open lets one probe through). */
static bool sp_breaker_admits(struct sp_instance *instance)
{
	switch (instance->breaker) {
	case SP_CLOSED:
		return true;
	case SP_OPEN:
		if (!sp_cooled_down(instance))
			return false;
		instance->breaker = SP_HALF_OPEN;
		instance->probe_out = false;
		fallthrough;
	case SP_HALF_OPEN:
		return !instance->probe_out;
	}
	return false;
}

/* The serving instance with room and the fewest requests in flight. */
static struct sp_instance *sp_pick(const char *pipeline)
{
	struct sp_instance *instance, *best = NULL;

	list_for_each_entry(instance, &sp_instances, node) {
		if (instance->draining || !sp_serves(instance, pipeline))
			continue;
		if (instance->inflight >= instance->window)
			continue;
		if (!sp_breaker_admits(instance))
			continue;
		if (!best || instance->inflight < best->inflight ||
		    (instance->inflight == best->inflight && instance->sent < best->sent))
			best = instance;
	}
	return best;
}

static void sp_cache_put(const struct sp_request *request)
{
	struct sp_cache_entry *entry, *victim = NULL;
	unsigned int i;

	if (!sp_cache_size || !request->dims)
		return;
	for (i = 0; i < sp_cache_size; i++) {
		entry = &sp_cache[i];
		if (!entry->used) {
			victim = entry;
			break;
		}
		if (!victim || entry->stamp < victim->stamp)
			victim = entry;
	}
	kfree(victim->text);
	kfree(victim->vector);
	victim->used = false;
	victim->text = kmemdup(request->text, request->len, GFP_KERNEL);
	victim->vector = kmemdup(request->vector, request->dims * sizeof(__le32), GFP_KERNEL);
	if (!victim->text || !victim->vector) {
		kfree(victim->text);
		kfree(victim->vector);
		victim->text = NULL;
		victim->vector = NULL;
		return;
	}
	victim->len = request->len;
	victim->dims = request->dims;
	victim->hash = jhash(request->text, request->len, jhash(request->pipeline, strlen(request->pipeline), 0));
	strscpy(victim->pipeline, request->pipeline, sizeof(victim->pipeline));
	victim->stamp = ++sp_cache_clock;
	victim->used = true;
}

static struct sp_cache_entry *sp_cache_get(const char *pipeline, const char *text, size_t len)
{
	u32 hash = jhash(text, len, jhash(pipeline, strlen(pipeline), 0));
	unsigned int i;

	for (i = 0; i < sp_cache_size; i++) {
		struct sp_cache_entry *entry = &sp_cache[i];

		if (entry->used && entry->hash == hash && entry->len == len &&
		    !strcmp(entry->pipeline, pipeline) && !memcmp(entry->text, text, len)) {
			entry->stamp = ++sp_cache_clock;
			return entry;
		}
	}
	return NULL;
}

void sp_cache_clear_locked(void)
{
	unsigned int i;

	for (i = 0; i < sp_cache_size; i++) {
		kfree(sp_cache[i].text);
		kfree(sp_cache[i].vector);
		memset(&sp_cache[i], 0, sizeof(sp_cache[i]));
	}
}

static bool sp_rate_allows(u32 sender)
{
	struct sp_bucket *bucket = NULL, *oldest = NULL;
	unsigned long now = jiffies;
	u64 cap = (u64)sp_rate_burst * 1000;
	unsigned int i;

	if (!sp_rate_limit)
		return true;
	for (i = 0; i < ARRAY_SIZE(sp_buckets); i++) {
		if (sp_buckets[i].used && sp_buckets[i].sender == sender) {
			bucket = &sp_buckets[i];
			break;
		}
		if (!oldest || !sp_buckets[i].used ||
		    (oldest->used && time_before(sp_buckets[i].stamp, oldest->stamp)))
			oldest = &sp_buckets[i];
	}
	if (!bucket) {
		bucket = oldest;
		bucket->used = true;
		bucket->sender = sender;
		bucket->tokens = cap;
		bucket->stamp = now;
	}
	bucket->tokens += (u64)jiffies_to_msecs(now - bucket->stamp) * sp_rate_limit;
	if (bucket->tokens > cap)
		bucket->tokens = cap;
	bucket->stamp = now;
	if (bucket->tokens < 1000)
		return false;
	bucket->tokens -= 1000;
	return true;
}

/* Records the result of a claimed request (already erased from the
 * xarray) and moves it to the batch's completions. */
static void sp_settle(struct sp_request *request, int error, const __le32 *vector, u32 dims,
		      const char *reason, struct sp_batch *batch)
{
	struct sp_instance *owner = request->owner;
	int counter;

	if (owner) {
		owner->inflight--;
		if (request->probe)
			owner->probe_out = false;
		request->owner = NULL;
	} else if (!list_empty(&request->queue_node)) {
		list_del_init(&request->queue_node);
		sp_queued--;
	}
	if (!error && dims) {
		request->vector = kmemdup(vector, dims * sizeof(__le32), GFP_KERNEL);
		if (!request->vector) {
			error = -ENOMEM;
			dims = 0;
			reason = "out of memory for the vector";
		}
	}
	request->error = error;
	request->dims = error ? 0 : dims;
	strscpy(request->reason, reason ? reason : "", sizeof(request->reason));
	switch (error) {
	case 0:
		counter = SPINDLE_NL_STAT_OK;
		sp_cache_put(request);
		break;
	case -ETIMEDOUT:
		counter = SPINDLE_NL_STAT_TIMEOUTS;
		break;
	case -EBUSY:
		counter = SPINDLE_NL_STAT_BUSY;
		break;
	case -ECANCELED:
		counter = SPINDLE_NL_STAT_CANCELLED;
		break;
	case -ECONNRESET:
		counter = SPINDLE_NL_STAT_RELEASED;
		break;
	case -ENOTCONN:
		counter = SPINDLE_NL_STAT_NO_DAEMON;
		break;
	case -EHOSTDOWN:
		counter = SPINDLE_NL_STAT_BREAKER_FAST_FAILS;
		break;
	default:
		counter = SPINDLE_NL_STAT_ERRORS;
	}
	sp_counters[counter]++;
	list_add_tail(&request->done_node, &batch->completions);
}

static void sp_queue_send(struct sp_batch *batch, struct sk_buff *skb, u32 portid, u32 request_id)
{
	struct sp_send *send = kzalloc(sizeof(*send), GFP_KERNEL);

	if (!send) {
		kfree_skb(skb);
		return;
	}
	send->skb = skb;
	send->portid = portid;
	send->request_id = request_id;
	list_add_tail(&send->node, &batch->sends);
}

static void sp_send_request(struct sp_request *request, struct sp_instance *instance, struct sp_batch *batch)
{
	long left = (long)request->deadline - (long)jiffies;
	u32 deadline_ms = left > 0 ? jiffies_to_msecs(left) : 0;
	struct sk_buff *skb = sp_build_request(request, deadline_ms ? deadline_ms : 1);

	if (!list_empty(&request->queue_node)) {
		list_del_init(&request->queue_node);
		sp_queued--;
	}
	if (!skb) {
		xa_erase(&sp_requests, request->id);
		sp_settle(request, -ENOMEM, NULL, 0, "out of memory for the message", batch);
		return;
	}
	request->owner = instance;
	instance->inflight++;
	instance->sent++;
	if (instance->breaker == SP_HALF_OPEN) {
		request->probe = true;
		instance->probe_out = true;
	}
	sp_queue_send(batch, skb, instance->portid, request->id);
}

/* Sends queued requests while instances have room: a weighted round
 * robin over the priorities (4 high, 2 medium, 1 low), so low priority is
 * never starved and high priority goes first. */
void sp_dispatch_locked(struct sp_batch *batch)
{
	static const u8 order[] = { 0, 0, 0, 0, 1, 1, 2 };
	bool progress = true;

	while (progress && sp_queued) {
		unsigned int k;

		progress = false;
		for (k = 0; k < ARRAY_SIZE(order) && !progress; k++) {
			u8 priority = order[(sp_wrr + k) % ARRAY_SIZE(order)];
			struct sp_request *request;

			list_for_each_entry(request, &sp_queues[priority], queue_node) {
				struct sp_instance *instance = sp_pick(request->pipeline);

				if (instance) {
					sp_send_request(request, instance, batch);
					sp_wrr = (sp_wrr + k + 1) % ARRAY_SIZE(order);
					progress = true;
					break;
				}
			}
		}
	}
}

static void sp_arm_sweep(unsigned long at)
{
	if (sp_stopping)
		return;
	if (sp_sweep_armed && !time_before(at, sp_sweep_at))
		return;
	sp_sweep_armed = true;
	sp_sweep_at = at;
	mod_delayed_work(system_wq, &sp_sweep_work, time_after(at, jiffies) ? at - jiffies : 0);
}

/* Removes draining instances that have nothing left in flight. */
static void sp_reap_drained(struct sp_batch *batch)
{
	struct sp_instance *instance, *next;

	list_for_each_entry_safe(instance, next, &sp_instances, node)
		if (instance->draining && !instance->inflight)
			sp_remove_instance_locked(instance, -ECONNRESET, "the instance left", batch);
}

void sp_remove_instance_locked(struct sp_instance *instance, int error, const char *why,
			       struct sp_batch *batch)
{
	struct sp_request *request, *next;
	unsigned long index;
	int priority;

	list_del(&instance->node);
	xa_for_each(&sp_requests, index, request) {
		if (request->owner != instance)
			continue;
		xa_erase(&sp_requests, index);
		sp_settle(request, error, NULL, 0, why, batch);
	}
	/* Queued requests nobody serves any more fail now. */
	for (priority = 0; priority < 3; priority++) {
		list_for_each_entry_safe(request, next, &sp_queues[priority], queue_node) {
			struct sp_instance *other;
			bool served = false;

			list_for_each_entry(other, &sp_instances, node)
				if (sp_serves(other, request->pipeline))
					served = true;
			if (served)
				continue;
			xa_erase(&sp_requests, request->id);
			sp_settle(request, list_empty(&sp_instances) ? -ENOTCONN : -ENOENT, NULL, 0,
				  "no instance serves the pipeline any more", batch);
		}
	}
	sp_event(SPINDLE_NL_EVENT_DAEMON_DOWN, instance);
	pr_info("spindle_netlink: instance %016llx (port %u) removed: %s\n",
		instance->instance_id, instance->portid, why);
	kfree(instance);
	wake_up_all(&sp_instances_changed);
	sp_dispatch_locked(batch);
}

int sp_complete_locked(u32 id, u32 from_portid, int error, const __le32 *vector, u32 dims,
		       const char *reason, struct sp_batch *batch)
{
	struct sp_request *request = xa_load(&sp_requests, id);
	struct sp_instance *owner;

	if (!request || !request->owner) {
		sp_counters[SPINDLE_NL_STAT_LATE_REPLIES]++;
		return -ENOENT;
	}
	owner = request->owner;
	if (owner->portid != from_portid)
		return -EPERM;
	xa_erase(&sp_requests, id);
	owner->answered++;
	owner->consecutive_timeouts = 0;
	if (owner->breaker != SP_CLOSED) {
		owner->breaker = SP_CLOSED;
		sp_event(SPINDLE_NL_EVENT_BREAKER_CLOSED, owner);
	}
	sp_settle(request, error, vector, dims, reason, batch);
	sp_reap_drained(batch);
	sp_dispatch_locked(batch);
	return 0;
}

static void sp_sweep(struct work_struct *work)
{
	struct sp_request *request;
	struct sp_instance *instance;
	unsigned long now, index, next;
	struct sp_batch batch;

	sp_batch_init(&batch);
	mutex_lock(&sp_lock);
	sp_sweep_armed = false;
	now = jiffies;
	next = now + 3600 * HZ;
	xa_for_each(&sp_requests, index, request) {
		if (!time_after_eq(now, request->deadline)) {
			if (time_before(request->deadline, next))
				next = request->deadline;
			continue;
		}
		xa_erase(&sp_requests, index);
		instance = request->owner;
		if (instance) {
			instance->consecutive_timeouts++;
			if (request->probe || (instance->breaker == SP_CLOSED &&
					       instance->consecutive_timeouts >= sp_breaker_threshold)) {
				instance->breaker = SP_OPEN;
				instance->opened_at = now;
				sp_event(SPINDLE_NL_EVENT_BREAKER_OPEN, instance);
				pr_info("spindle_netlink: breaker of instance %016llx opened after %u timeouts\n",
					instance->instance_id, instance->consecutive_timeouts);
			}
			if (instance->features & SPINDLE_NL_F_CANCEL) {
				struct sk_buff *skb = sp_build_cancel(request->id);

				if (skb)
					sp_queue_send(&batch, skb, instance->portid, 0);
			}
		}
		sp_settle(request, -ETIMEDOUT, NULL, 0, "deadline exceeded", &batch);
	}
	/* Queued requests may wait for a breaker's cooldown. */
	if (sp_queued)
		list_for_each_entry(instance, &sp_instances, node)
			if (instance->breaker == SP_OPEN &&
			    time_before(instance->opened_at + msecs_to_jiffies(sp_breaker_cooldown_ms), next))
				next = instance->opened_at + msecs_to_jiffies(sp_breaker_cooldown_ms);
	sp_reap_drained(&batch);
	sp_dispatch_locked(&batch);
	if (!xa_empty(&sp_requests))
		sp_arm_sweep(next);
	mutex_unlock(&sp_lock);
	sp_finish_batch(&batch);
}

/* Sends and completions collected under the lock; a REQUEST that cannot be
 * sent fails its request (and may free room for others). */
void sp_finish_batch(struct sp_batch *batch)
{
	for (;;) {
		struct sp_request *request, *next;
		struct sp_send *send, *send_next;
		LIST_HEAD(failed);

		list_for_each_entry_safe(send, send_next, &batch->sends, node) {
			int err = genlmsg_unicast_checked(send->skb, send->portid);

			list_del(&send->node);
			if (err && send->request_id)
				list_add_tail(&send->node, &failed);
			else
				kfree(send);
		}
		list_for_each_entry_safe(request, next, &batch->completions, done_node) {
			struct spindle_nl_result result = {
				.id = request->id,
				.error = request->error,
				.dims = request->dims,
				.vector = request->vector,
				.text = request->reason,
				.cached = request->cached,
			};

			list_del(&request->done_node);
			request->done(request->context, &result);
			kfree(request->vector);
			kfree(request->text);
			kfree(request);
		}
		if (list_empty(&failed))
			return;
		mutex_lock(&sp_lock);
		list_for_each_entry_safe(send, send_next, &failed, node) {
			request = xa_erase(&sp_requests, send->request_id);
			if (request)
				sp_settle(request, -ECONNRESET, NULL, 0,
					  "the request could not be sent to the instance", batch);
			list_del(&send->node);
			kfree(send);
		}
		sp_reap_drained(batch);
		sp_dispatch_locked(batch);
		mutex_unlock(&sp_lock);
	}
}

int spindle_nl_submit(const struct spindle_nl_submission *submission, u64 *id)
{
	size_t name_len = submission->pipeline ? strnlen(submission->pipeline, SP_NAME_LEN) : 0;
	struct sp_cache_entry *cached;
	struct sp_instance *instance;
	struct sp_request *request;
	struct sp_batch batch;
	bool serving = false, admitting = false;
	u32 limit;
	int err;

	if (!name_len || name_len > SPINDLE_NL_LIMIT_PIPELINE_NAME || !submission->text ||
	    !submission->len || submission->len > SPINDLE_NL_LIMIT_PAYLOAD ||
	    submission->priority > SPINDLE_NL_PRIO_LOW || !submission->deadline_ms ||
	    submission->deadline_ms > 600000 || !submission->done)
		return -EINVAL;
	request = kzalloc(sizeof(*request), GFP_KERNEL);
	if (!request)
		return -ENOMEM;
	request->text = kmemdup(submission->text, submission->len, GFP_KERNEL);
	if (!request->text) {
		kfree(request);
		return -ENOMEM;
	}
	request->len = submission->len;
	strscpy(request->pipeline, submission->pipeline, sizeof(request->pipeline));
	request->priority = submission->priority;
	request->deadline = jiffies + msecs_to_jiffies(submission->deadline_ms);
	request->sender = submission->sender;
	request->done = submission->done;
	request->context = submission->context;
	INIT_LIST_HEAD(&request->queue_node);
	INIT_LIST_HEAD(&request->done_node);
	sp_batch_init(&batch);

	mutex_lock(&sp_lock);
	sp_counters[SPINDLE_NL_STAT_SUBMITTED]++;
	if (sp_stopping) {
		sp_counters[SPINDLE_NL_STAT_ERRORS]++;
		err = -ESHUTDOWN;
		goto refuse;
	}
	if (!sp_rate_allows(submission->sender)) {
		sp_counters[SPINDLE_NL_STAT_RATE_LIMITED]++;
		err = -EAGAIN;
		goto refuse;
	}
	cached = sp_cache_get(request->pipeline, request->text, request->len);
	if (cached) {
		sp_counters[SPINDLE_NL_STAT_CACHE_HITS]++;
		request->cached = true;
		sp_settle(request, 0, cached->vector, cached->dims, "", &batch);
		*id = 0;
		mutex_unlock(&sp_lock);
		sp_finish_batch(&batch);
		return 0;
	}
	sp_counters[SPINDLE_NL_STAT_CACHE_MISSES]++;
	list_for_each_entry(instance, &sp_instances, node) {
		if (instance->draining || !sp_serves(instance, request->pipeline))
			continue;
		serving = true;
		if (instance->breaker != SP_OPEN || sp_cooled_down(instance))
			admitting = true;
	}
	if (list_empty(&sp_instances)) {
		sp_counters[SPINDLE_NL_STAT_NO_DAEMON]++;
		err = -ENOTCONN;
		goto refuse;
	}
	if (!serving) {
		sp_counters[SPINDLE_NL_STAT_ERRORS]++;
		err = -ENOENT;
		goto refuse;
	}
	if (!admitting) {
		sp_counters[SPINDLE_NL_STAT_BREAKER_FAST_FAILS]++;
		err = -EHOSTDOWN;
		goto refuse;
	}
	err = xa_alloc_cyclic(&sp_requests, &request->id, request, XA_LIMIT(1, U32_MAX),
			      &sp_next_id, GFP_KERNEL);
	if (err < 0) {
		sp_counters[SPINDLE_NL_STAT_ERRORS]++;
		goto refuse;
	}
	*id = request->id;
	instance = sp_pick(request->pipeline);
	if (instance && !sp_queued) {
		sp_send_request(request, instance, &batch);
	} else {
		limit = sp_queue_cap;
		if (request->priority != SPINDLE_NL_PRIO_HIGH)
			limit -= min(sp_high_reserve, sp_queue_cap);
		if (sp_queued >= limit) {
			xa_erase(&sp_requests, request->id);
			sp_counters[SPINDLE_NL_STAT_BUSY]++;
			if (time_after(jiffies, sp_overload_event_at + HZ)) {
				sp_overload_event_at = jiffies;
				sp_event(SPINDLE_NL_EVENT_OVERLOAD, NULL);
			}
			err = -EBUSY;
			goto refuse;
		}
		list_add_tail(&request->queue_node, &sp_queues[request->priority]);
		sp_queued++;
		sp_dispatch_locked(&batch);
	}
	sp_arm_sweep(request->deadline);
	mutex_unlock(&sp_lock);
	sp_finish_batch(&batch);
	return 0;
refuse:
	mutex_unlock(&sp_lock);
	kfree(request->text);
	kfree(request);
	return err;
}
EXPORT_SYMBOL_GPL(spindle_nl_submit);

int spindle_nl_cancel(u64 id)
{
	struct sp_request *request;
	struct sp_batch batch;

	if (!id || id > U32_MAX)
		return -ENOENT;
	sp_batch_init(&batch);
	mutex_lock(&sp_lock);
	request = xa_erase(&sp_requests, (unsigned long)id);
	if (!request) {
		mutex_unlock(&sp_lock);
		return -ENOENT;
	}
	if (request->owner && (request->owner->features & SPINDLE_NL_F_CANCEL)) {
		struct sk_buff *skb = sp_build_cancel(request->id);

		if (skb)
			sp_queue_send(&batch, skb, request->owner->portid, 0);
	}
	sp_settle(request, -ECANCELED, NULL, 0, "cancelled by the caller", &batch);
	sp_reap_drained(&batch);
	sp_dispatch_locked(&batch);
	mutex_unlock(&sp_lock);
	sp_finish_batch(&batch);
	return 0;
}
EXPORT_SYMBOL_GPL(spindle_nl_cancel);

struct sp_call {
	struct completion done;
	int error;
	__le32 *vector;
	u32 max_dims;
	u32 dims;
};

static void sp_call_done(void *context, const struct spindle_nl_result *result)
{
	struct sp_call *call = context;

	call->error = result->error;
	call->dims = min(result->dims, call->max_dims);
	if (call->vector && call->dims)
		memcpy(call->vector, result->vector, call->dims * sizeof(__le32));
	complete(&call->done);
}

int spindle_nl_call(const struct spindle_nl_submission *submission, __le32 *vector, u32 max_dims,
		    u32 *dims)
{
	struct spindle_nl_submission waiting = *submission;
	struct sp_call call = { .vector = vector, .max_dims = max_dims };
	u64 id;
	int err;

	init_completion(&call.done);
	waiting.done = sp_call_done;
	waiting.context = &call;
	err = spindle_nl_submit(&waiting, &id);
	if (err)
		return err;
	/* Completion is guaranteed by the deadline sweep; the callback writes
	 * into this frame, so the wait cannot be abandoned early. */
	wait_for_completion(&call.done);
	if (dims)
		*dims = call.dims;
	return call.error;
}
EXPORT_SYMBOL_GPL(spindle_nl_call);

int sp_core_init(void)
{
	int priority;

	for (priority = 0; priority < 3; priority++)
		INIT_LIST_HEAD(&sp_queues[priority]);
	INIT_DELAYED_WORK(&sp_sweep_work, sp_sweep);
	sp_cache_size = min(sp_cache_entries, 4096U);
	if (sp_cache_size) {
		sp_cache = kcalloc(sp_cache_size, sizeof(*sp_cache), GFP_KERNEL);
		if (!sp_cache)
			return -ENOMEM;
	}
	return 0;
}

/* Fails everything left and frees the instances. */
void sp_core_exit(void)
{
	struct sp_instance *instance, *next;
	struct sp_request *request;
	struct sp_batch batch;
	unsigned long index;

	sp_batch_init(&batch);
	mutex_lock(&sp_lock);
	sp_stopping = true;
	mutex_unlock(&sp_lock);
	cancel_delayed_work_sync(&sp_sweep_work);
	mutex_lock(&sp_lock);
	xa_for_each(&sp_requests, index, request) {
		xa_erase(&sp_requests, index);
		sp_settle(request, -ESHUTDOWN, NULL, 0, "the module is unloading", &batch);
	}
	list_for_each_entry_safe(instance, next, &sp_instances, node) {
		list_del(&instance->node);
		kfree(instance);
	}
	sp_cache_clear_locked();
	mutex_unlock(&sp_lock);
	/* Nothing may be sent any more: drop the sends, run the callbacks. */
	{
		struct sp_send *send, *send_next;

		list_for_each_entry_safe(send, send_next, &batch.sends, node) {
			kfree_skb(send->skb);
			list_del(&send->node);
			kfree(send);
		}
	}
	sp_finish_batch(&batch);
	kfree(sp_cache);
	xa_destroy(&sp_requests);
}
