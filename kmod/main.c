// SPDX-License-Identifier: GPL-2.0
/*
 * spindle_netlink: kernel code asks Spindle's pipelines for embeddings over
 * the generic netlink family `spindle` (docs/netlink-protocol.md). This
 * file holds the module's parameters, init and exit.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include "spindle_nl_internal.h"

unsigned int sp_max_window = 256;
module_param_named(max_window, sp_max_window, uint, 0644);
MODULE_PARM_DESC(max_window, "the largest in-flight window an instance gets");

unsigned int sp_queue_cap = 1024;
module_param_named(queue_cap, sp_queue_cap, uint, 0644);
MODULE_PARM_DESC(queue_cap, "requests queued while every instance is at its window");

unsigned int sp_high_reserve = 64;
module_param_named(high_reserve, sp_high_reserve, uint, 0644);
MODULE_PARM_DESC(high_reserve, "queue places only high priority may use");

unsigned int sp_breaker_threshold = 3;
module_param_named(breaker_threshold, sp_breaker_threshold, uint, 0644);
MODULE_PARM_DESC(breaker_threshold, "consecutive timeouts that open an instance's breaker");

unsigned int sp_breaker_cooldown_ms = 1000;
module_param_named(breaker_cooldown_ms, sp_breaker_cooldown_ms, uint, 0644);
MODULE_PARM_DESC(breaker_cooldown_ms, "how long a breaker stays open before a probe");

unsigned int sp_heartbeat_ms = 1000;
module_param_named(heartbeat_ms, sp_heartbeat_ms, uint, 0644);
MODULE_PARM_DESC(heartbeat_ms, "the heartbeat watchdog's period");

unsigned int sp_heartbeat_misses = 5;
module_param_named(heartbeat_misses, sp_heartbeat_misses, uint, 0644);
MODULE_PARM_DESC(heartbeat_misses, "silent periods before an instance is removed");

unsigned int sp_rate_limit = 100000;
module_param_named(rate_limit, sp_rate_limit, uint, 0644);
MODULE_PARM_DESC(rate_limit, "requests per second per sender (0: no limit)");

unsigned int sp_rate_burst = 10000;
module_param_named(rate_burst, sp_rate_burst, uint, 0644);
MODULE_PARM_DESC(rate_burst, "requests a sender may send at once");

unsigned int sp_cache_entries = 256;
module_param_named(cache_entries, sp_cache_entries, uint, 0444);
MODULE_PARM_DESC(cache_entries, "vectors kept in the result cache (at load)");

static int __init sp_init(void)
{
	int err = sp_core_init();

	if (err)
		return err;
	err = sp_genl_init();
	if (err) {
		sp_core_exit();
		return err;
	}
	sp_debugfs_init();
	pr_info("spindle_netlink: family `%s` version %d loaded\n", SPINDLE_NL_FAMILY_NAME,
		SPINDLE_NL_PROTOCOL_VERSION);
	return 0;
}

static void __exit sp_exit(void)
{
	sp_debugfs_exit();
	sp_genl_exit();
	sp_core_exit();
}

module_init(sp_init);
module_exit(sp_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Spindle: embeddings for kernel code over generic netlink");
