// SPDX-License-Identifier: GPL-2.0
/*
 * The generic netlink family `spindle`: its policy (strict validation by
 * the genl core), the commands a daemon sends (register, reply, heartbeat,
 * error, unregister, stats), the messages the module sends (requests,
 * cancels, heartbeat echoes, events), socket release (NETLINK_URELEASE
 * fails a dead instance's requests at once) and the heartbeat watchdog.
 */
#include <linux/module.h>
#include <linux/netlink.h>
#include <linux/slab.h>
#include <linux/workqueue.h>
#include <net/genetlink.h>
#include <net/netlink.h>
#include "spindle_nl_internal.h"

#define SP_MAX_INSTANCES 16

static const struct nla_policy sp_serve_policy[SPINDLE_NL_SERVE_A_MAX + 1] = {
	[SPINDLE_NL_SERVE_A_PIPELINE] = { .type = NLA_NUL_STRING, .len = SPINDLE_NL_LIMIT_PIPELINE_NAME },
	[SPINDLE_NL_SERVE_A_MODEL] = { .type = NLA_NUL_STRING, .len = SPINDLE_NL_LIMIT_MODEL_NAME },
	[SPINDLE_NL_SERVE_A_DIMS] = NLA_POLICY_MAX(NLA_U32, SPINDLE_NL_LIMIT_DIMS),
};

static const struct nla_policy sp_policy[SPINDLE_NL_A_MAX + 1] = {
	[SPINDLE_NL_A_VERSION] = { .type = NLA_U32 },
	[SPINDLE_NL_A_FEATURES] = { .type = NLA_U64 },
	[SPINDLE_NL_A_INSTANCE_ID] = { .type = NLA_U64 },
	[SPINDLE_NL_A_SERVE] = NLA_POLICY_NESTED(sp_serve_policy),
	[SPINDLE_NL_A_MAX_INFLIGHT] = NLA_POLICY_RANGE(NLA_U32, 1, SPINDLE_NL_LIMIT_MAX_INFLIGHT),
	[SPINDLE_NL_A_REQUEST_ID] = { .type = NLA_U64 },
	[SPINDLE_NL_A_STATUS] = NLA_POLICY_MAX(NLA_U8, SPINDLE_NL_STATUS_CANCELLED),
	[SPINDLE_NL_A_VECTOR] = { .type = NLA_BINARY, .len = SPINDLE_NL_LIMIT_DIMS * 4 },
	[SPINDLE_NL_A_ERROR_CODE] = NLA_POLICY_RANGE(NLA_U32, 1, 4095),
	[SPINDLE_NL_A_ERROR_TEXT] = { .type = NLA_NUL_STRING, .len = SPINDLE_NL_LIMIT_ERROR_TEXT },
	[SPINDLE_NL_A_HEARTBEAT_SEQ] = { .type = NLA_U64 },
	[SPINDLE_NL_A_INFLIGHT] = { .type = NLA_U32 },
};

static struct genl_family sp_family;

static const struct genl_multicast_group sp_mcgrps[] = {
	{ .name = SPINDLE_NL_EVENTS_GROUP },
};

int genlmsg_unicast_checked(struct sk_buff *skb, u32 portid)
{
	return genlmsg_unicast(&init_net, skb, portid);
}

static struct sk_buff *sp_new(u8 command, void **header, size_t size)
{
	struct sk_buff *skb = genlmsg_new(size, GFP_KERNEL);

	if (!skb)
		return NULL;
	*header = genlmsg_put(skb, 0, 0, &sp_family, 0, command);
	if (!*header) {
		nlmsg_free(skb);
		return NULL;
	}
	return skb;
}

struct sk_buff *sp_build_request(const struct sp_request *request, u32 deadline_ms)
{
	void *header;
	struct sk_buff *skb = sp_new(SPINDLE_NL_CMD_REQUEST, &header,
				     nla_total_size_64bit(8) + nla_total_size(1) + nla_total_size(4) +
				     nla_total_size(SP_NAME_LEN) + nla_total_size(request->len));

	if (!skb)
		return NULL;
	if (nla_put_u64_64bit(skb, SPINDLE_NL_A_REQUEST_ID, request->id, SPINDLE_NL_A_PAD) ||
	    nla_put_u8(skb, SPINDLE_NL_A_PRIORITY, request->priority) ||
	    nla_put_u32(skb, SPINDLE_NL_A_DEADLINE_MS, deadline_ms) ||
	    nla_put_string(skb, SPINDLE_NL_A_PIPELINE, request->pipeline) ||
	    nla_put(skb, SPINDLE_NL_A_PAYLOAD, request->len, request->text)) {
		nlmsg_free(skb);
		return NULL;
	}
	genlmsg_end(skb, header);
	return skb;
}

struct sk_buff *sp_build_cancel(u32 id)
{
	void *header;
	struct sk_buff *skb = sp_new(SPINDLE_NL_CMD_CANCEL, &header, nla_total_size_64bit(8));

	if (!skb)
		return NULL;
	if (nla_put_u64_64bit(skb, SPINDLE_NL_A_REQUEST_ID, id, SPINDLE_NL_A_PAD)) {
		nlmsg_free(skb);
		return NULL;
	}
	genlmsg_end(skb, header);
	return skb;
}

void sp_event(u8 kind, const struct sp_instance *instance)
{
	void *header;
	struct sk_buff *skb = sp_new(SPINDLE_NL_CMD_EVENT, &header, 64);

	if (!skb)
		return;
	if (nla_put_u8(skb, SPINDLE_NL_A_EVENT_KIND, kind) ||
	    (instance && (nla_put_u64_64bit(skb, SPINDLE_NL_A_INSTANCE_ID, instance->instance_id,
					    SPINDLE_NL_A_PAD) ||
			  nla_put_u32(skb, SPINDLE_NL_A_PORT, instance->portid)))) {
		nlmsg_free(skb);
		return;
	}
	genlmsg_end(skb, header);
	/* -ESRCH when nobody listens: fine. */
	genlmsg_multicast(&sp_family, skb, 0, 0, GFP_KERNEL);
}

static void sp_count_malformed(void)
{
	mutex_lock(&sp_lock);
	sp_counters[SPINDLE_NL_STAT_MALFORMED]++;
	mutex_unlock(&sp_lock);
}

/* -EINVAL with the text as extended ack when a required attribute is
 * missing (the policy checks types and sizes, not presence). */
#define sp_require(info, attr, message) ({				\
	int __err = 0;							\
	if (!(info)->attrs[attr]) {					\
		NL_SET_ERR_MSG((info)->extack, message);		\
		sp_count_malformed();					\
		__err = -EINVAL;					\
	}								\
	__err;								\
})

static int sp_register_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct sp_instance *instance, *other;
	const struct nlattr *attr;
	struct sk_buff *reply;
	struct sp_batch batch;
	void *header;
	int rem, err;
	u32 version;
	u64 features;

	err = sp_require(info, SPINDLE_NL_A_VERSION, "VERSION is required") ?:
	      sp_require(info, SPINDLE_NL_A_FEATURES, "FEATURES is required") ?:
	      sp_require(info, SPINDLE_NL_A_INSTANCE_ID, "INSTANCE_ID is required") ?:
	      sp_require(info, SPINDLE_NL_A_MAX_INFLIGHT, "MAX_INFLIGHT is required");
	if (err)
		return err;
	version = nla_get_u32(info->attrs[SPINDLE_NL_A_VERSION]);
	features = nla_get_u64(info->attrs[SPINDLE_NL_A_FEATURES]);
	if (version != SPINDLE_NL_PROTOCOL_VERSION) {
		NL_SET_ERR_MSG(info->extack, "protocol version mismatch: this module speaks version 1");
		return -EPROTO;
	}
	if ((features & SPINDLE_NL_F_REQUIRED) != SPINDLE_NL_F_REQUIRED) {
		NL_SET_ERR_MSG(info->extack, "a required feature (VECTOR_F32) is missing");
		return -EPROTO;
	}
	instance = kzalloc(sizeof(*instance), GFP_KERNEL);
	if (!instance)
		return -ENOMEM;
	instance->portid = info->snd_portid;
	instance->instance_id = nla_get_u64(info->attrs[SPINDLE_NL_A_INSTANCE_ID]);
	instance->version = version;
	instance->features = features & SPINDLE_NL_F_ALL;
	instance->window = min(nla_get_u32(info->attrs[SPINDLE_NL_A_MAX_INFLIGHT]), sp_max_window);
	if (!instance->window)
		instance->window = 1;
	nla_for_each_attr(attr, genlmsg_data(info->genlhdr), genlmsg_len(info->genlhdr), rem) {
		struct nlattr *serve[SPINDLE_NL_SERVE_A_MAX + 1];

		if (nla_type(attr) != SPINDLE_NL_A_SERVE)
			continue;
		if (instance->n_serves == SPINDLE_NL_LIMIT_SERVES) {
			NL_SET_ERR_MSG(info->extack, "more than 16 SERVE entries");
			kfree(instance);
			return -EINVAL;
		}
		err = nla_parse_nested(serve, SPINDLE_NL_SERVE_A_MAX, attr, sp_serve_policy, info->extack);
		if (err || !serve[SPINDLE_NL_SERVE_A_PIPELINE] ||
		    !nla_len(serve[SPINDLE_NL_SERVE_A_PIPELINE]) ||
		    !*(char *)nla_data(serve[SPINDLE_NL_SERVE_A_PIPELINE])) {
			NL_SET_ERR_MSG(info->extack, "a SERVE entry needs a PIPELINE name");
			kfree(instance);
			return err ?: -EINVAL;
		}
		nla_strscpy(instance->serves[instance->n_serves], serve[SPINDLE_NL_SERVE_A_PIPELINE], SP_NAME_LEN);
		if (serve[SPINDLE_NL_SERVE_A_DIMS])
			instance->dims[instance->n_serves] = nla_get_u32(serve[SPINDLE_NL_SERVE_A_DIMS]);
		instance->n_serves++;
	}
	if (!instance->n_serves) {
		NL_SET_ERR_MSG(info->extack, "REGISTER needs at least one SERVE entry");
		kfree(instance);
		return -EINVAL;
	}

	sp_batch_init(&batch);
	mutex_lock(&sp_lock);
	list_for_each_entry(other, &sp_instances, node) {
		if (other->portid == instance->portid) {
			NL_SET_ERR_MSG(info->extack, "this socket is registered already");
			err = -EBUSY;
		} else if (other->instance_id == instance->instance_id) {
			NL_SET_ERR_MSG(info->extack, "an instance with this id is registered already");
			err = -EBUSY;
		}
	}
	if (!err && sp_instance_count() >= SP_MAX_INSTANCES) {
		NL_SET_ERR_MSG(info->extack, "too many instances");
		err = -EBUSY;
	}
	if (err) {
		mutex_unlock(&sp_lock);
		kfree(instance);
		return err;
	}
	reply = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	header = reply ? genlmsg_put_reply(reply, info, &sp_family, 0, SPINDLE_NL_CMD_REGISTER) : NULL;
	if (!header || nla_put_u32(reply, SPINDLE_NL_A_VERSION, SPINDLE_NL_PROTOCOL_VERSION) ||
	    nla_put_u64_64bit(reply, SPINDLE_NL_A_FEATURES, instance->features, SPINDLE_NL_A_PAD) ||
	    nla_put_u64_64bit(reply, SPINDLE_NL_A_INSTANCE_ID, instance->instance_id, SPINDLE_NL_A_PAD) ||
	    nla_put_u32(reply, SPINDLE_NL_A_MAX_INFLIGHT, instance->window)) {
		mutex_unlock(&sp_lock);
		nlmsg_free(reply);
		kfree(instance);
		return -ENOMEM;
	}
	genlmsg_end(reply, header);
	err = genlmsg_reply(reply, info);
	if (err) {
		mutex_unlock(&sp_lock);
		kfree(instance);
		return err;
	}
	list_add_tail(&instance->node, &sp_instances);
	/* A new instance may run another model version: forget cached vectors. */
	sp_cache_clear_locked();
	sp_event(SPINDLE_NL_EVENT_DAEMON_UP, instance);
	pr_info("spindle_netlink: instance %016llx registered from port %u (%d pipelines, window %u)\n",
		instance->instance_id, instance->portid, instance->n_serves, instance->window);
	wake_up_all(&sp_instances_changed);
	/* Queued requests go out from a work item, after the ack of this
	 * REGISTER has reached the daemon. */
	mutex_unlock(&sp_lock);
	schedule_work(&sp_dispatch_work);
	return 0;
}

static int sp_reply_doit(struct sk_buff *skb, struct genl_info *info)
{
	const struct nlattr *vector_attr = info->attrs[SPINDLE_NL_A_VECTOR];
	const __le32 *vector = NULL;
	struct sp_instance *instance;
	const char *reason = "";
	struct sp_batch batch;
	u32 dims = 0, i;
	int error = 0, err;
	u8 status;
	u64 id;

	err = sp_require(info, SPINDLE_NL_A_REQUEST_ID, "REQUEST_ID is required") ?:
	      sp_require(info, SPINDLE_NL_A_STATUS, "STATUS is required");
	if (err)
		return err;
	id = nla_get_u64(info->attrs[SPINDLE_NL_A_REQUEST_ID]);
	status = nla_get_u8(info->attrs[SPINDLE_NL_A_STATUS]);
	if (status == SPINDLE_NL_STATUS_OK) {
		err = sp_require(info, SPINDLE_NL_A_VECTOR, "an ok REPLY needs VECTOR");
		if (err)
			return err;
		if (nla_len(vector_attr) % 4) {
			NL_SET_ERR_MSG(info->extack, "VECTOR is not a whole number of f32");
			goto malformed;
		}
		dims = nla_len(vector_attr) / 4;
		vector = nla_data(vector_attr);
		for (i = 0; i < dims; i++)
			if (((le32_to_cpu(vector[i]) >> 23) & 0xff) == 0xff) {
				NL_SET_ERR_MSG(info->extack, "VECTOR holds a value that is not finite");
				goto malformed;
			}
	} else {
		err = sp_require(info, SPINDLE_NL_A_ERROR_CODE, "a failed REPLY needs ERROR_CODE");
		if (err)
			return err;
		switch (status) {
		case SPINDLE_NL_STATUS_TIMEOUT:
			error = -ETIMEDOUT;
			break;
		case SPINDLE_NL_STATUS_BUSY:
			error = -EBUSY;
			break;
		case SPINDLE_NL_STATUS_CANCELLED:
			error = -ECANCELED;
			break;
		default:
			error = -(int)nla_get_u32(info->attrs[SPINDLE_NL_A_ERROR_CODE]);
		}
		if (info->attrs[SPINDLE_NL_A_ERROR_TEXT])
			reason = nla_data(info->attrs[SPINDLE_NL_A_ERROR_TEXT]);
	}
	if (id == 0 || id > U32_MAX) {
		NL_SET_ERR_MSG(info->extack, "no such request");
		return -ENOENT;
	}
	sp_batch_init(&batch);
	mutex_lock(&sp_lock);
	instance = sp_find_instance(info->snd_portid);
	if (!instance) {
		mutex_unlock(&sp_lock);
		NL_SET_ERR_MSG(info->extack, "the sender is not a registered instance");
		return -ENOTCONN;
	}
	instance->missed_heartbeats = 0;
	err = sp_complete_locked((u32)id, info->snd_portid, error, vector, dims, reason, &batch);
	mutex_unlock(&sp_lock);
	sp_finish_batch(&batch);
	if (err == -EPERM)
		NL_SET_ERR_MSG(info->extack, "the request belongs to another instance");
	else if (err == -ENOENT)
		NL_SET_ERR_MSG(info->extack, "no such request (answered, timed out or cancelled)");
	return err;
malformed:
	sp_count_malformed();
	return -EINVAL;
}

static int sp_heartbeat_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct sp_instance *instance;
	struct sk_buff *reply;
	void *header;
	u64 seq;
	int err = sp_require(info, SPINDLE_NL_A_HEARTBEAT_SEQ, "HEARTBEAT_SEQ is required");

	if (err)
		return err;
	seq = nla_get_u64(info->attrs[SPINDLE_NL_A_HEARTBEAT_SEQ]);
	mutex_lock(&sp_lock);
	instance = sp_find_instance(info->snd_portid);
	if (instance)
		instance->missed_heartbeats = 0;
	mutex_unlock(&sp_lock);
	if (!instance) {
		NL_SET_ERR_MSG(info->extack, "the sender is not a registered instance");
		return -ENOTCONN;
	}
	reply = genlmsg_new(nla_total_size_64bit(8), GFP_KERNEL);
	if (!reply)
		return -ENOMEM;
	header = genlmsg_put_reply(reply, info, &sp_family, 0, SPINDLE_NL_CMD_HEARTBEAT);
	if (!header || nla_put_u64_64bit(reply, SPINDLE_NL_A_HEARTBEAT_SEQ, seq, SPINDLE_NL_A_PAD)) {
		nlmsg_free(reply);
		return -ENOMEM;
	}
	genlmsg_end(reply, header);
	return genlmsg_reply(reply, info);
}

static int sp_error_doit(struct sk_buff *skb, struct genl_info *info)
{
	mutex_lock(&sp_lock);
	sp_counters[SPINDLE_NL_STAT_MALFORMED]++;
	mutex_unlock(&sp_lock);
	if (info->attrs[SPINDLE_NL_A_ERROR_TEXT])
		pr_warn_ratelimited("spindle_netlink: port %u reports: %s\n", info->snd_portid,
				    (char *)nla_data(info->attrs[SPINDLE_NL_A_ERROR_TEXT]));
	return 0;
}

static int sp_unregister_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct sp_instance *instance;
	struct sp_batch batch;

	sp_batch_init(&batch);
	mutex_lock(&sp_lock);
	instance = sp_find_instance(info->snd_portid);
	if (!instance) {
		mutex_unlock(&sp_lock);
		NL_SET_ERR_MSG(info->extack, "the sender is not a registered instance");
		return -ENOTCONN;
	}
	instance->draining = true;
	pr_info("spindle_netlink: instance %016llx drains (%u in flight)\n", instance->instance_id,
		instance->inflight);
	if (!instance->inflight)
		sp_remove_instance_locked(instance, -ECONNRESET, "unregistered", &batch);
	mutex_unlock(&sp_lock);
	sp_finish_batch(&batch);
	return 0;
}

static int sp_stats_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct sk_buff *reply = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	struct nlattr *nest;
	void *header;
	int counter;

	if (!reply)
		return -ENOMEM;
	header = genlmsg_put_reply(reply, info, &sp_family, 0, SPINDLE_NL_CMD_STATS);
	nest = header ? nla_nest_start(reply, SPINDLE_NL_A_STATS) : NULL;
	if (!nest) {
		nlmsg_free(reply);
		return -ENOMEM;
	}
	mutex_lock(&sp_lock);
	sp_counters[SPINDLE_NL_STAT_INFLIGHT] = sp_inflight_locked();
	sp_counters[SPINDLE_NL_STAT_QUEUED] = sp_queued_locked();
	sp_counters[SPINDLE_NL_STAT_INSTANCES] = sp_instance_count();
	for (counter = 1; counter <= SPINDLE_NL_STAT_MAX; counter++)
		if (nla_put_u64_64bit(reply, counter, sp_counters[counter], SPINDLE_NL_STAT_PAD))
			break;
	mutex_unlock(&sp_lock);
	nla_nest_end(reply, nest);
	genlmsg_end(reply, header);
	return genlmsg_reply(reply, info);
}

static const struct genl_ops sp_ops[] = {
	{ .cmd = SPINDLE_NL_CMD_REGISTER, .doit = sp_register_doit, .flags = GENL_ADMIN_PERM },
	{ .cmd = SPINDLE_NL_CMD_REPLY, .doit = sp_reply_doit, .flags = GENL_ADMIN_PERM },
	{ .cmd = SPINDLE_NL_CMD_HEARTBEAT, .doit = sp_heartbeat_doit, .flags = GENL_ADMIN_PERM },
	{ .cmd = SPINDLE_NL_CMD_ERROR, .doit = sp_error_doit, .flags = GENL_ADMIN_PERM },
	{ .cmd = SPINDLE_NL_CMD_UNREGISTER, .doit = sp_unregister_doit, .flags = GENL_ADMIN_PERM },
	{ .cmd = SPINDLE_NL_CMD_STATS, .doit = sp_stats_doit },
};

static struct genl_family sp_family = {
	.name = SPINDLE_NL_FAMILY_NAME,
	.version = SPINDLE_NL_FAMILY_VERSION,
	.maxattr = SPINDLE_NL_A_MAX,
	.policy = sp_policy,
	.netnsok = false,
	.parallel_ops = true,
	.module = THIS_MODULE,
	.ops = sp_ops,
	.n_ops = ARRAY_SIZE(sp_ops),
	.mcgrps = sp_mcgrps,
	.n_mcgrps = ARRAY_SIZE(sp_mcgrps),
};

/* Released ports, recorded in atomic context, handled by a work item. */
static DEFINE_SPINLOCK(sp_release_lock);
static u32 sp_released[64];
static unsigned int sp_n_released;

static void sp_release_work_fn(struct work_struct *work)
{
	u32 ports[ARRAY_SIZE(sp_released)];
	struct sp_instance *instance;
	struct sp_batch batch;
	unsigned int n, i;

	spin_lock_bh(&sp_release_lock);
	n = sp_n_released;
	memcpy(ports, sp_released, n * sizeof(u32));
	sp_n_released = 0;
	spin_unlock_bh(&sp_release_lock);
	sp_batch_init(&batch);
	mutex_lock(&sp_lock);
	for (i = 0; i < n; i++) {
		instance = sp_find_instance(ports[i]);
		if (instance)
			sp_remove_instance_locked(instance, -ECONNRESET, "its socket was released", &batch);
	}
	mutex_unlock(&sp_lock);
	sp_finish_batch(&batch);
}
static DECLARE_WORK(sp_release_work, sp_release_work_fn);

static int sp_netlink_notify(struct notifier_block *block, unsigned long state, void *data)
{
	struct netlink_notify *notify = data;
	unsigned long flags;

	if (state != NETLINK_URELEASE || notify->protocol != NETLINK_GENERIC ||
	    notify->net != &init_net)
		return NOTIFY_DONE;
	spin_lock_irqsave(&sp_release_lock, flags);
	if (sp_n_released < ARRAY_SIZE(sp_released))
		sp_released[sp_n_released++] = notify->portid;
	spin_unlock_irqrestore(&sp_release_lock, flags);
	schedule_work(&sp_release_work);
	return NOTIFY_DONE;
}

static struct notifier_block sp_notifier = {
	.notifier_call = sp_netlink_notify,
};

/* Instances whose heartbeats stop are removed like released ones. */
static void sp_heartbeat_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(sp_heartbeat_work, sp_heartbeat_fn);

static void sp_heartbeat_fn(struct work_struct *work)
{
	struct sp_instance *instance, *next;
	struct sp_batch batch;

	sp_batch_init(&batch);
	mutex_lock(&sp_lock);
	list_for_each_entry_safe(instance, next, &sp_instances, node) {
		if (++instance->missed_heartbeats > sp_heartbeat_misses)
			sp_remove_instance_locked(instance, -ECONNRESET, "its heartbeats stopped", &batch);
	}
	mutex_unlock(&sp_lock);
	sp_finish_batch(&batch);
	schedule_delayed_work(&sp_heartbeat_work, msecs_to_jiffies(max(sp_heartbeat_ms, 10U)));
}

static void sp_dispatch_fn(struct work_struct *work)
{
	struct sp_batch batch;

	sp_batch_init(&batch);
	mutex_lock(&sp_lock);
	sp_dispatch_locked(&batch);
	mutex_unlock(&sp_lock);
	sp_finish_batch(&batch);
}
DECLARE_WORK(sp_dispatch_work, sp_dispatch_fn);

int sp_genl_init(void)
{
	int err = genl_register_family(&sp_family);

	if (err)
		return err;
	err = netlink_register_notifier(&sp_notifier);
	if (err) {
		genl_unregister_family(&sp_family);
		return err;
	}
	schedule_delayed_work(&sp_heartbeat_work, msecs_to_jiffies(max(sp_heartbeat_ms, 10U)));
	return 0;
}

void sp_genl_exit(void)
{
	netlink_unregister_notifier(&sp_notifier);
	genl_unregister_family(&sp_family);
	cancel_delayed_work_sync(&sp_heartbeat_work);
	cancel_work_sync(&sp_release_work);
	cancel_work_sync(&sp_dispatch_work);
}
