/**
 * Device profiles: what the testnet makes each node look like. A profile states its rates and where
 * they come from; the CPU rate is reached by calibrating a cgroup CPU quota against a measured query
 * (calibrate.ts), the link rate is a tbf qdisc on each node's link, both directions.
 *
 * Only two knobs exist: one CPU quota (it slows prefill and decode alike) and one link rate (no added
 * delay: this kernel has no netem). What they cannot express is written down in `limitations`.
 */

export const PROFILE_NAMES = ['pi-zero-2w', 'lan', 'fast-cpu-slow-link'] as const
export type ProfileName = typeof PROFILE_NAMES[number]

export interface Profile {
  name: ProfileName
  description: string
  /** prompt tokens per second the CPU quota is calibrated to (Gemma-3-270M shape); undefined: no CPU limit */
  prefillTokPerS?: number
  /** what the device is assumed to decode at; not enforced separately (the quota sets both), reported beside the measured rate */
  assumedDecodeTokPerS?: number
  /** per-node link rate in Mbit/s, each direction; undefined: no limit */
  linkMbit?: number
  /** per chunk request on top of the bytes: RTT and stream setup (used by the simulation only) */
  requestOverheadMs: number
  /** evaluation threads per node (default DEFAULT_THREADS) */
  threads?: number
  /** the assumptions behind the numbers, with sources */
  assumptions: string[]
  limitations: string[]
}

const PI_ZERO_2W: Profile = {
  name: 'pi-zero-2w',
  description: 'Raspberry Pi Zero 2W: quad Cortex-A53 at 1 GHz, 512 MB RAM, 2.4 GHz 802.11n Wi-Fi',
  prefillTokPerS: 50,
  assumedDecodeTokPerS: 2,
  linkMbit: 25,
  requestOverheadMs: 15,
  assumptions: [
    'Hardware: Broadcom RP3A0, 4 × Cortex-A53 at 1 GHz, 512 MB LPDDR2, 802.11n 2.4 GHz single stream (Raspberry Pi Zero 2 W product brief, raspberrypi.com).',
    'Decode ≈ 2 tok/s: SmolLM-360M Q4_K_M (~210 MB) generates 2.6 tok/s on a Pi Zero 2W with a purpose-built engine ' +
      '(blog "SmolLM on a Smol Machine", llm-inference.com). Decode is memory-bound: Gemma-3-270M Q8_0 reads ~290 MB per token ' +
      '(the 262k × 640 tied output head is 170 M of its 270 M parameters), so ~2 tok/s.',
    'Prefill ≈ 50 tok/s (uncertain by about 2×): prefill is compute-bound; Gemma-3-270M has ~100 M non-embedding parameters, ' +
      'about 10× less work per prompt token than a 1B model, and 1B-class models prefill at a few tokens per second on ' +
      'Cortex-A53-class boards. This is one to two orders of magnitude below the ~1,000 tok/s this development machine ' +
      'reaches with 2 threads (DESIGN.md), and consistent with the paper\'s multi-second MMLU prefills on the Pi Zero 2W ' +
      '(arXiv 2602.22812). Override with --prefill-rate.',
    'Link 25 Mbit/s each way: 802.11n 2.4 GHz, 1 spatial stream, 20 MHz has a 72 Mbit/s PHY rate; real-world TCP through ' +
      'an access point is typically 20–40 Mbit/s. Override with --link-rate.'
  ],
  limitations: [
    'One CPU quota slows prefill and decode by the same factor; this machine decodes relatively faster than a Pi ' +
      '(more memory bandwidth per FLOP), so the calibrated decode rate is above the assumed one and TTLT reductions are ' +
      'larger than a real Pi would show. Both rates are reported.',
    'The quota also slows the node\'s networking code (encryption, chunk serving), as a Pi\'s CPU would, but not in the same proportion.',
    'Wi-Fi is a shared medium (one channel for all nodes); the testnet limits each node\'s link separately. Queries run one at a ' +
      'time, so transfers rarely overlap. No added latency or loss (no netem here).'
  ]
}

const LAN: Profile = {
  name: 'lan',
  description: 'no limits: this machine\'s CPU and the namespaces\' virtual links',
  requestOverheadMs: 2,
  assumptions: ['Nodes run at this machine\'s full speed and share its cores; links are veth pairs on a bridge (many Gbit/s).'],
  limitations: ['All nodes share this machine\'s cores: queries run one at a time so that timings mean something.']
}

const FAST_CPU_SLOW_LINK: Profile = {
  name: 'fast-cpu-slow-link',
  description: 'no CPU limit, a 2 Mbit/s link: computing a prefix beats fetching it, so adaptive fetching should fall back to local',
  linkMbit: 2,
  requestOverheadMs: 15,
  assumptions: [
    'Link 2 Mbit/s each way: a congested or distant Wi-Fi link (802.11 falls back to 1–2 Mbit/s rates at the edge of range).',
    'A 32-token chunk of the Gemma-3-270M shape is ~590 KB (DESIGN.md): ~2.4 s per chunk at 2 Mbit/s against ~0.1 s to compute it here.'
  ],
  limitations: ['Shows that `catalog` does not lose against `local` when the network is the bottleneck (mean TTFT within ~2 %).']
}

export const PROFILES: Record<ProfileName, Profile> = {
  'pi-zero-2w': PI_ZERO_2W,
  lan: LAN,
  'fast-cpu-slow-link': FAST_CPU_SLOW_LINK
}

export function isProfileName (name: string): name is ProfileName {
  return (PROFILE_NAMES as readonly string[]).includes(name)
}

/** The named profile with --prefill-rate / --link-rate applied (0 removes a limit). */
export function resolveProfile (name: ProfileName, overrides: { prefillTokPerS?: number, linkMbit?: number } = {}): Profile {
  const base = PROFILES[name]
  const profile: Profile = { ...base, assumptions: [...base.assumptions], limitations: [...base.limitations] }
  if (overrides.prefillTokPerS != null) {
    profile.prefillTokPerS = overrides.prefillTokPerS > 0 ? overrides.prefillTokPerS : undefined
    profile.assumptions.push(`Prefill rate set on the command line: ${overrides.prefillTokPerS > 0 ? `${overrides.prefillTokPerS} tok/s` : 'no CPU limit'}.`)
  }
  if (overrides.linkMbit != null) {
    profile.linkMbit = overrides.linkMbit > 0 ? overrides.linkMbit : undefined
    profile.assumptions.push(`Link rate set on the command line: ${overrides.linkMbit > 0 ? `${overrides.linkMbit} Mbit/s` : 'no limit'}.`)
  }
  return profile
}
