// SPDX-License-Identifier: GPL-2.0
/*
 * The test interface under /sys/kernel/debug/spindle_netlink/, for shell
 * scripts (kmod/e2e/scenarios.sh):
 *
 *   call            write "PIPELINE PRIORITY DEADLINE_MS TEXT", blocks until
 *                   the answer; read the result back from the same open file
 *   flood           write "COUNT PIPELINE PRIORITY DEADLINE_MS TEXT": submits
 *                   COUNT requests without waiting; read the tally
 *   flood_wait      read: blocks until no flood request is pending, then the
 *                   tally
 *   flood_reset     write anything: zero the tally
 *   wait_instances  write N: blocks (at most 60 s) until N instances are
 *                   registered
 *   stats           read: the counters, and their balance
 *   instances       read: one line per instance
 *   cache_clear     write anything: forget cached vectors
 *
 * PRIORITY is high, medium or low. Vectors print as decimals with six
 * places, computed from the f32 bits with integer arithmetic (no FPU in the
 * kernel).
 */
#include <linux/debugfs.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include "spindle_nl_internal.h"

static struct dentry *sp_dir;

struct sp_parsed {
	unsigned int count;
	char pipeline[SP_NAME_LEN];
	u8 priority;
	u32 deadline_ms;
	const char *text;
	size_t len;
};

/* Parses "[COUNT ]PIPELINE PRIORITY DEADLINE_MS TEXT" in place. */
static int sp_parse(char *line, bool with_count, struct sp_parsed *parsed)
{
	char *words[4];
	int i, n = with_count ? 4 : 3;
	char *priority;
	size_t len;

	len = strlen(line);
	while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		line[--len] = 0;
	for (i = 0; i < n; i++) {
		line = skip_spaces(line);
		words[i] = strsep(&line, " ");
		if (!words[i] || !*words[i] || !line)
			return -EINVAL;
	}
	i = 0;
	parsed->count = 1;
	if (with_count && kstrtouint(words[i++], 10, &parsed->count))
		return -EINVAL;
	if (strscpy(parsed->pipeline, words[i++], sizeof(parsed->pipeline)) < 0)
		return -EINVAL;
	priority = words[i++];
	if (!strcmp(priority, "high"))
		parsed->priority = SPINDLE_NL_PRIO_HIGH;
	else if (!strcmp(priority, "medium"))
		parsed->priority = SPINDLE_NL_PRIO_MEDIUM;
	else if (!strcmp(priority, "low"))
		parsed->priority = SPINDLE_NL_PRIO_LOW;
	else
		return -EINVAL;
	if (kstrtou32(words[i], 10, &parsed->deadline_ms))
		return -EINVAL;
	parsed->text = line;
	parsed->len = strlen(line);
	return parsed->len ? 0 : -EINVAL;
}

static char *sp_read_line(const char __user *buffer, size_t count)
{
	if (count > SPINDLE_NL_LIMIT_PAYLOAD + 128)
		return ERR_PTR(-EMSGSIZE);
	return memdup_user_nul(buffer, count);
}

/* An f32 (raw bits) as a decimal with six places. */
static int sp_format_f32(char *out, size_t size, u32 bits)
{
	u32 exponent = (bits >> 23) & 0xff;
	u64 mantissa = (bits & 0x7fffff) | 0x800000;
	const char *sign = bits >> 31 ? "-" : "";
	u64 scaled;
	int shift;

	if (!exponent)
		return scnprintf(out, size, "0.000000");
	shift = 150 - exponent;
	if (shift <= 0 || shift >= 64)
		scaled = shift <= 0 ? U64_MAX / 2 : 0;
	else
		scaled = (mantissa * 1000000 + (1ULL << (shift - 1))) >> shift;
	return scnprintf(out, size, "%s%llu.%06llu", sign, scaled / 1000000, scaled % 1000000);
}

/* --- call --- */

struct sp_call_file {
	char *result;
	size_t len;
};

static int sp_call_open(struct inode *inode, struct file *file)
{
	file->private_data = kzalloc(sizeof(struct sp_call_file), GFP_KERNEL);
	return file->private_data ? 0 : -ENOMEM;
}

static int sp_call_release(struct inode *inode, struct file *file)
{
	struct sp_call_file *call = file->private_data;

	kvfree(call->result);
	kfree(call);
	return 0;
}

struct sp_call_context {
	struct completion done;
	int error;
	u64 id;
	bool cached;
	u32 dims;
	__le32 *vector;
	char text[SP_TEXT_LEN];
};

static void sp_call_file_done(void *data, const struct spindle_nl_result *result)
{
	struct sp_call_context *context = data;

	context->error = result->error;
	context->cached = result->cached;
	context->dims = min_t(u32, result->dims, SPINDLE_NL_LIMIT_DIMS);
	if (context->dims)
		memcpy(context->vector, result->vector, context->dims * sizeof(__le32));
	strscpy(context->text, result->text ? result->text : "", sizeof(context->text));
	complete(&context->done);
}

static ssize_t sp_call_write(struct file *file, const char __user *buffer, size_t count, loff_t *pos)
{
	struct sp_call_file *call = file->private_data;
	struct spindle_nl_submission submission;
	struct sp_call_context *context;
	struct sp_parsed parsed;
	size_t size, used = 0;
	ktime_t start;
	char *line;
	u32 i;
	int err;

	line = sp_read_line(buffer, count);
	if (IS_ERR(line))
		return PTR_ERR(line);
	err = sp_parse(line, false, &parsed);
	if (err) {
		kfree(line);
		return err;
	}
	context = kzalloc(sizeof(*context), GFP_KERNEL);
	if (context)
		context->vector = kcalloc(SPINDLE_NL_LIMIT_DIMS, sizeof(__le32), GFP_KERNEL);
	if (!context || !context->vector) {
		if (context)
			kfree(context->vector);
		kfree(context);
		kfree(line);
		return -ENOMEM;
	}
	init_completion(&context->done);
	submission = (struct spindle_nl_submission){
		.pipeline = parsed.pipeline,
		.text = parsed.text,
		.len = parsed.len,
		.priority = parsed.priority,
		.deadline_ms = parsed.deadline_ms,
		.sender = task_tgid_nr(current),
		.done = sp_call_file_done,
		.context = context,
	};
	start = ktime_get();
	err = spindle_nl_submit(&submission, &context->id);
	if (err) {
		context->error = err;
		strscpy(context->text, "refused at submission", sizeof(context->text));
	} else {
		wait_for_completion(&context->done);
	}
	size = 256 + context->dims * 12;
	kvfree(call->result);
	call->result = kvmalloc(size, GFP_KERNEL);
	if (call->result) {
		used = scnprintf(call->result, size,
				 "id %llu\nstatus %s\nerror %d\ncached %d\nelapsed_us %lld\ntext %s\ndims %u\nvector",
				 context->id, context->error ? "error" : "ok", context->error,
				 context->cached, ktime_us_delta(ktime_get(), start), context->text,
				 context->dims);
		for (i = 0; i < context->dims && used + 16 < size; i++) {
			call->result[used++] = ' ';
			used += sp_format_f32(call->result + used, size - used,
					      le32_to_cpu(context->vector[i]));
		}
		used += scnprintf(call->result + used, size - used, "\n");
	}
	call->len = used;
	kfree(context->vector);
	kfree(context);
	kfree(line);
	return call->result ? count : -ENOMEM;
}

static ssize_t sp_call_read(struct file *file, char __user *buffer, size_t count, loff_t *pos)
{
	struct sp_call_file *call = file->private_data;

	if (!call->result)
		return 0;
	return simple_read_from_buffer(buffer, count, pos, call->result, call->len);
}

static const struct file_operations sp_call_fops = {
	.owner = THIS_MODULE,
	.open = sp_call_open,
	.release = sp_call_release,
	.write = sp_call_write,
	.read = sp_call_read,
	.llseek = no_llseek,
};

/* --- flood --- */

static DEFINE_SPINLOCK(sp_flood_lock);
static DECLARE_WAIT_QUEUE_HEAD(sp_flood_idle);
static struct {
	u64 submitted, accepted, pending;
	u64 refused_busy, refused_other;
	u64 ok, timeout, busy, released, cancelled, error;
} sp_flood;

static void sp_flood_done(void *context, const struct spindle_nl_result *result)
{
	spin_lock(&sp_flood_lock);
	switch (result->error) {
	case 0:
		sp_flood.ok++;
		break;
	case -ETIMEDOUT:
		sp_flood.timeout++;
		break;
	case -EBUSY:
		sp_flood.busy++;
		break;
	case -ECONNRESET:
		sp_flood.released++;
		break;
	case -ECANCELED:
		sp_flood.cancelled++;
		break;
	default:
		sp_flood.error++;
	}
	sp_flood.pending--;
	spin_unlock(&sp_flood_lock);
	wake_up_all(&sp_flood_idle);
}

static ssize_t sp_flood_write(struct file *file, const char __user *buffer, size_t count, loff_t *pos)
{
	struct spindle_nl_submission submission;
	struct sp_parsed parsed;
	unsigned int i;
	char *line;
	u64 id;
	int err;

	line = sp_read_line(buffer, count);
	if (IS_ERR(line))
		return PTR_ERR(line);
	err = sp_parse(line, true, &parsed);
	if (err || parsed.count > 100000) {
		kfree(line);
		return err ?: -EINVAL;
	}
	submission = (struct spindle_nl_submission){
		.pipeline = parsed.pipeline,
		.text = parsed.text,
		.len = parsed.len,
		.priority = parsed.priority,
		.deadline_ms = parsed.deadline_ms,
		.sender = task_tgid_nr(current),
		.done = sp_flood_done,
	};
	for (i = 0; i < parsed.count; i++) {
		spin_lock(&sp_flood_lock);
		sp_flood.submitted++;
		sp_flood.pending++;
		spin_unlock(&sp_flood_lock);
		err = spindle_nl_submit(&submission, &id);
		if (err) {
			spin_lock(&sp_flood_lock);
			sp_flood.pending--;
			if (err == -EBUSY)
				sp_flood.refused_busy++;
			else
				sp_flood.refused_other++;
			spin_unlock(&sp_flood_lock);
		} else {
			spin_lock(&sp_flood_lock);
			sp_flood.accepted++;
			spin_unlock(&sp_flood_lock);
		}
	}
	wake_up_all(&sp_flood_idle);
	kfree(line);
	return count;
}

static int sp_flood_show(struct seq_file *seq, void *unused)
{
	spin_lock(&sp_flood_lock);
	seq_printf(seq,
		   "submitted %llu\naccepted %llu\npending %llu\nrefused_busy %llu\nrefused_other %llu\n"
		   "ok %llu\ntimeout %llu\nbusy %llu\nreleased %llu\ncancelled %llu\nerror %llu\n",
		   sp_flood.submitted, sp_flood.accepted, sp_flood.pending, sp_flood.refused_busy,
		   sp_flood.refused_other, sp_flood.ok, sp_flood.timeout, sp_flood.busy,
		   sp_flood.released, sp_flood.cancelled, sp_flood.error);
	spin_unlock(&sp_flood_lock);
	return 0;
}

static int sp_flood_open(struct inode *inode, struct file *file)
{
	return single_open(file, sp_flood_show, NULL);
}

static const struct file_operations sp_flood_fops = {
	.owner = THIS_MODULE,
	.open = sp_flood_open,
	.read = seq_read,
	.write = sp_flood_write,
	.llseek = seq_lseek,
	.release = single_release,
};

static bool sp_flood_is_idle(void)
{
	bool idle;

	spin_lock(&sp_flood_lock);
	idle = sp_flood.pending == 0;
	spin_unlock(&sp_flood_lock);
	return idle;
}

static int sp_flood_wait_open(struct inode *inode, struct file *file)
{
	long left = wait_event_interruptible_timeout(sp_flood_idle, sp_flood_is_idle(), 120 * HZ);

	if (left < 0)
		return left;
	if (!left)
		return -ETIMEDOUT;
	return single_open(file, sp_flood_show, NULL);
}

static const struct file_operations sp_flood_wait_fops = {
	.owner = THIS_MODULE,
	.open = sp_flood_wait_open,
	.read = seq_read,
	.llseek = seq_lseek,
	.release = single_release,
};

static ssize_t sp_flood_reset_write(struct file *file, const char __user *buffer, size_t count,
				    loff_t *pos)
{
	spin_lock(&sp_flood_lock);
	if (!sp_flood.pending)
		memset(&sp_flood, 0, sizeof(sp_flood));
	spin_unlock(&sp_flood_lock);
	return count;
}

static const struct file_operations sp_flood_reset_fops = {
	.owner = THIS_MODULE,
	.write = sp_flood_reset_write,
};

/* --- wait_instances, cache_clear --- */

static bool sp_has_instances(unsigned int wanted)
{
	bool equal;

	mutex_lock(&sp_lock);
	equal = sp_instance_count() == wanted;
	mutex_unlock(&sp_lock);
	return equal;
}

static ssize_t sp_wait_instances_write(struct file *file, const char __user *buffer, size_t count,
				       loff_t *pos)
{
	unsigned int wanted;
	long left;
	int err = kstrtouint_from_user(buffer, count, 10, &wanted);

	if (err)
		return err;
	left = wait_event_interruptible_timeout(sp_instances_changed, sp_has_instances(wanted), 60 * HZ);
	if (left < 0)
		return left;
	return left ? count : -ETIMEDOUT;
}

static const struct file_operations sp_wait_instances_fops = {
	.owner = THIS_MODULE,
	.write = sp_wait_instances_write,
};

static ssize_t sp_cache_clear_write(struct file *file, const char __user *buffer, size_t count,
				    loff_t *pos)
{
	mutex_lock(&sp_lock);
	sp_cache_clear_locked();
	mutex_unlock(&sp_lock);
	return count;
}

static const struct file_operations sp_cache_clear_fops = {
	.owner = THIS_MODULE,
	.write = sp_cache_clear_write,
};

/* --- stats, instances --- */

static const char *const sp_stat_names[SPINDLE_NL_STAT_MAX + 1] = {
	[SPINDLE_NL_STAT_SUBMITTED] = "submitted",
	[SPINDLE_NL_STAT_OK] = "ok",
	[SPINDLE_NL_STAT_ERRORS] = "errors",
	[SPINDLE_NL_STAT_TIMEOUTS] = "timeouts",
	[SPINDLE_NL_STAT_BUSY] = "busy",
	[SPINDLE_NL_STAT_RATE_LIMITED] = "rate_limited",
	[SPINDLE_NL_STAT_CANCELLED] = "cancelled",
	[SPINDLE_NL_STAT_RELEASED] = "released",
	[SPINDLE_NL_STAT_CACHE_HITS] = "cache_hits",
	[SPINDLE_NL_STAT_CACHE_MISSES] = "cache_misses",
	[SPINDLE_NL_STAT_INFLIGHT] = "inflight",
	[SPINDLE_NL_STAT_QUEUED] = "queued",
	[SPINDLE_NL_STAT_INSTANCES] = "instances",
	[SPINDLE_NL_STAT_NO_DAEMON] = "no_daemon",
	[SPINDLE_NL_STAT_BREAKER_FAST_FAILS] = "breaker_fast_fails",
	[SPINDLE_NL_STAT_MALFORMED] = "malformed",
	[SPINDLE_NL_STAT_LATE_REPLIES] = "late_replies",
};

static int sp_stats_show(struct seq_file *seq, void *unused)
{
	static const int settled[] = {
		SPINDLE_NL_STAT_OK, SPINDLE_NL_STAT_ERRORS, SPINDLE_NL_STAT_TIMEOUTS,
		SPINDLE_NL_STAT_BUSY, SPINDLE_NL_STAT_RATE_LIMITED, SPINDLE_NL_STAT_CANCELLED,
		SPINDLE_NL_STAT_RELEASED, SPINDLE_NL_STAT_NO_DAEMON, SPINDLE_NL_STAT_BREAKER_FAST_FAILS,
	};
	s64 balance;
	int counter;
	size_t i;

	mutex_lock(&sp_lock);
	sp_counters[SPINDLE_NL_STAT_INFLIGHT] = sp_inflight_locked();
	sp_counters[SPINDLE_NL_STAT_QUEUED] = sp_queued_locked();
	sp_counters[SPINDLE_NL_STAT_INSTANCES] = sp_instance_count();
	for (counter = 1; counter <= SPINDLE_NL_STAT_MAX; counter++)
		seq_printf(seq, "%s %llu\n", sp_stat_names[counter], sp_counters[counter]);
	/* Every submission is settled exactly once, or still in flight/queued. */
	balance = sp_counters[SPINDLE_NL_STAT_SUBMITTED] - sp_counters[SPINDLE_NL_STAT_INFLIGHT] -
		  sp_counters[SPINDLE_NL_STAT_QUEUED];
	for (i = 0; i < ARRAY_SIZE(settled); i++)
		balance -= sp_counters[settled[i]];
	mutex_unlock(&sp_lock);
	seq_printf(seq, "balance %lld\n", balance);
	return 0;
}

static int sp_instances_show(struct seq_file *seq, void *unused)
{
	static const char *const breakers[] = { "closed", "open", "half-open" };
	struct sp_instance *instance;
	int i;

	mutex_lock(&sp_lock);
	list_for_each_entry(instance, &sp_instances, node) {
		seq_printf(seq, "instance %016llx port %u window %u inflight %u sent %llu answered %llu breaker %s draining %d pipelines",
			   instance->instance_id, instance->portid, instance->window, instance->inflight,
			   instance->sent, instance->answered, breakers[instance->breaker],
			   instance->draining);
		for (i = 0; i < instance->n_serves; i++)
			seq_printf(seq, " %s", instance->serves[i]);
		seq_puts(seq, "\n");
	}
	mutex_unlock(&sp_lock);
	return 0;
}

DEFINE_SHOW_ATTRIBUTE(sp_stats);
DEFINE_SHOW_ATTRIBUTE(sp_instances);

int sp_debugfs_init(void)
{
	sp_dir = debugfs_create_dir("spindle_netlink", NULL);
	if (IS_ERR(sp_dir))
		return PTR_ERR(sp_dir);
	debugfs_create_file("call", 0600, sp_dir, NULL, &sp_call_fops);
	debugfs_create_file("flood", 0600, sp_dir, NULL, &sp_flood_fops);
	debugfs_create_file("flood_wait", 0400, sp_dir, NULL, &sp_flood_wait_fops);
	debugfs_create_file("flood_reset", 0200, sp_dir, NULL, &sp_flood_reset_fops);
	debugfs_create_file("wait_instances", 0200, sp_dir, NULL, &sp_wait_instances_fops);
	debugfs_create_file("cache_clear", 0200, sp_dir, NULL, &sp_cache_clear_fops);
	debugfs_create_file("stats", 0400, sp_dir, NULL, &sp_stats_fops);
	debugfs_create_file("instances", 0400, sp_dir, NULL, &sp_instances_fops);
	return 0;
}

void sp_debugfs_exit(void)
{
	debugfs_remove_recursive(sp_dir);
}
