// When a push job's slots fall: the same rule as schedules/slots.py, for deployments whose cron
// dispatches inside Convex. A day's slot is the first instant whose local date is that day and
// whose local time is at or after HH:mm: in a gap (clocks jump forward) that is the first valid
// minute after the gap; in an overlap (clocks fall back) the first occurrence, so it runs once.

export type Schedule = {
  kind: "daily" | "weekly" | "monthly";
  at: string; // HH:mm
  tz: string; // IANA zone
  weekdays?: number[]; // weekly: 1 = Monday … 7 = Sunday
  day?: number | "last"; // monthly: 1–31 (clamped to the month) or "last"
};

const MINUTE = 60_000;
const DAY = 86_400_000;
const formats = new Map<string, Intl.DateTimeFormat>();

function format(tz: string): Intl.DateTimeFormat {
  let f = formats.get(tz);
  if (f === undefined) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: tz,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
    formats.set(tz, f);
  }
  return f;
}

/** The local wall clock at `ms`, as milliseconds of a UTC calendar ("local ms"). */
export function localMs(ms: number, tz: string): number {
  const parts: Record<string, number> = {};
  for (const p of format(tz).formatToParts(new Date(ms))) {
    if (p.type !== "literal") parts[p.type] = Number(p.value);
  }
  const hour = parts.hour === 24 ? 0 : parts.hour!;
  return Date.UTC(parts.year!, parts.month! - 1, parts.day!, hour, parts.minute!, parts.second!);
}

/** Whether the zone is a real IANA zone this runtime knows. */
export function knownZone(tz: string): boolean {
  try {
    format(tz);
    return true;
  } catch {
    return false;
  }
}

function lastDayOfMonth(year: number, month0: number): number {
  return new Date(Date.UTC(year, month0 + 1, 0)).getUTCDate();
}

/** Whether the schedule has a slot on the local day starting at `dayMs` (a UTC-calendar day). */
export function runsOn(s: Schedule, dayMs: number): boolean {
  const d = new Date(dayMs);
  if (s.kind === "daily") return true;
  if (s.kind === "weekly") return (s.weekdays ?? []).includes(((d.getUTCDay() + 6) % 7) + 1);
  const last = lastDayOfMonth(d.getUTCFullYear(), d.getUTCMonth());
  const want = s.day === "last" ? last : Math.min(Number(s.day ?? 0), last);
  return d.getUTCDate() === want;
}

function atMinutes(s: Schedule): number {
  const [h, m] = s.at.split(":").map(Number);
  return (h! * 60 + m!) * MINUTE;
}

/** The slot (epoch ms) of the local day starting at `dayMs`, or null when the schedule skips it. */
export function slotOn(s: Schedule, dayMs: number): number | null {
  if (!runsOn(s, dayMs)) return null;
  const target = dayMs + atMinutes(s); // the wanted wall clock, in local ms
  const offsetAt = (u: number) => localMs(u, s.tz) - u;
  const candidates = [target - offsetAt(target - DAY), target - offsetAt(target + DAY)];
  const exact = candidates.filter((u) => localMs(u, s.tz) === target).sort((a, b) => a - b);
  if (exact.length > 0) return exact[0]!;
  // A gap: the first minute whose wall clock is at or after the target (it rises through the gap).
  let lo = Math.min(...candidates);
  let hi = Math.max(...candidates);
  if (localMs(hi, s.tz) < target) return null;
  while (hi - lo > MINUTE) {
    const mid = lo + Math.floor((hi - lo) / 2 / MINUTE) * MINUTE;
    if (localMs(mid, s.tz) >= target) hi = mid;
    else lo = mid;
  }
  const wall = localMs(hi, s.tz);
  return wall >= dayMs && wall < dayMs + DAY ? hi : null;
}

function localDay(ms: number, tz: string): number {
  const wall = localMs(ms, tz);
  return wall - (((wall % DAY) + DAY) % DAY);
}

/** The first slot strictly after `afterMs`. */
export function nextSlot(s: Schedule, afterMs: number): number {
  let day = localDay(afterMs, s.tz) - DAY;
  for (let i = 0; i < 800; i++, day += DAY) {
    const slot = slotOn(s, day);
    if (slot !== null && slot > afterMs) return slot;
  }
  throw new Error("no slot within two years: the schedule is invalid");
}

/** The last slot at or before `atMs` (looking back at most a year), or null. */
export function latestSlot(s: Schedule, atMs: number): number | null {
  let day = localDay(atMs, s.tz) + DAY;
  for (let i = 0; i < 400; i++, day -= DAY) {
    const slot = slotOn(s, day);
    if (slot !== null && slot <= atMs) return slot;
  }
  return null;
}
