using System.Globalization;
using System.Text.Json;
using StackExchange.Redis;

namespace Cfn.Chaos;

/// <summary>A K10 record as read at the end: <c>coordinator:work:{swarm}:{owner}:{workId}</c>.</summary>
internal sealed record WorkRecord(string Key, string Swarm, string Owner, string WorkId, string? Status, long UpdatedAt, string Json);

/// <summary>
/// Judges a run. <see cref="CaptureAsync"/> runs while the system is still up (after the drain): the final K10 records,
/// the escalation records, the queues, and the state of every coordinator declared dead that is not running now.
/// <see cref="Judge"/> runs after every process stopped: the ledger against the completion lines and records, the
/// double-ownership samples, every death against the faults, every wait against its end, unexpected exits.
/// </summary>
internal sealed class Checker
{
    private const string CompleteLine = "Work item complete workId=";
    private const string DeadLine = "Marking coordinator as DEAD coordinator=";
    private const string ValidatorStartedLine = "Validator started validatorId=";
    private const string StartedLine = "Coordinator started coordinator=";
    private const string SupersededLine = "Coordinator superseded: coordinator=";
    private const string StoppedLine = "Coordinator stopped";
    private const string WaitStartLine = "Waiting for ACKs signalId=";
    private const string WaitEndLine = "ACK wait complete signalId=";
    private const string WaitTimeoutLine = "ACK wait timeout signalId=";

    private readonly ChaosOptions _options;
    private readonly IReadOnlyList<ManagedProcess> _processes;
    private readonly ChaosReport _report;
    private List<WorkRecord> _records = [];
    private DateTimeOffset _capturedAt = DateTimeOffset.MaxValue;
    private readonly Dictionary<string, string> _whereQueued = new(StringComparer.Ordinal);
    private readonly HashSet<string> _liveAtCapture = new(StringComparer.Ordinal);

    public Checker(ChaosOptions options, IReadOnlyList<ManagedProcess> processes, ChaosReport report)
    {
        _options = options;
        _processes = processes;
        _report = report;
    }

    private IEnumerable<ProcessRun> Runs => _processes.SelectMany(p => p.Runs);

    private readonly Dictionary<string, string> _escalations = new(StringComparer.Ordinal);

    /// <summary>Reads Redis while the system still runs: K10, K8, queues, and what is left of the dead.</summary>
    public async Task CaptureAsync(IConnectionMultiplexer redis)
    {
        var database = redis.GetDatabase();
        var server = redis.GetServers()[0];
        _capturedAt = DateTimeOffset.UtcNow;
        _records = await ReadWorkAsync(server, database);
        var escalations = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var notFinal = new List<string>();
        await foreach (var key in server.KeysAsync(pattern: "coordinator:escalation:*", pageSize: 1000))
        {
            var json = (string?)await database.StringGetAsync(key);
            var status = json is null ? "gone" : ReadString(json, "status") ?? "unknown";
            escalations[status] = escalations.GetValueOrDefault(status) + 1;
            _escalations[((string)key!)["coordinator:escalation:".Length..]] = json ?? "gone";
            if (status is not ("replaced" or "failed"))
            {
                notFinal.Add($"{key} {json}");
            }
        }

        _report.Figure("escalation records (K8) by status", escalations.Count == 0 ? "none" : string.Join(' ', escalations.Select(e => $"{e.Key}={e.Value}")));
        if (notFinal.Count > 0)
        {
            _report.Notes.Add($"escalations not final at the end: {string.Join(" | ", notFinal.Take(5))}");
        }

        var queued = 0L;
        var taken = new List<string>();
        await foreach (var key in server.KeysAsync(pattern: "swarm:*", pageSize: 1000))
        {
            var name = (string)key!;
            if (name.EndsWith(":queue", StringComparison.Ordinal) || name.Contains(":taken:", StringComparison.Ordinal))
            {
                var entries = await database.ListRangeAsync(key);
                for (var i = 0; i < entries.Length; i++)
                {
                    if (ReadString((string)entries[i]!, "workId") is { } workId)
                    {
                        _whereQueued[workId] = $"in {name} at position {i} of {entries.Length}";
                    }
                }

                if (name.EndsWith(":queue", StringComparison.Ordinal))
                {
                    queued += entries.Length;
                }
                else if (entries.Length > 0)
                {
                    taken.Add(name);
                }
            }
        }

        _report.Figure("items still in a swarm queue at the end", queued);
        var byStatus = _records.GroupBy(r => r.Status ?? "unreadable").ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        _report.Figure("K10 records at the end by status", string.Join(' ', byStatus.OrderBy(s => s.Key, StringComparer.Ordinal).Select(s => $"{s.Key}={s.Value}")));
        await CheckDeadStateAsync(server, database, taken);
    }

    private static async Task<List<WorkRecord>> ReadWorkAsync(IServer server, IDatabase database)
    {
        var keys = new List<RedisKey>();
        await foreach (var key in server.KeysAsync(pattern: "coordinator:work:*", pageSize: 1000))
        {
            keys.Add(key);
        }

        var records = new List<WorkRecord>();
        foreach (var chunk in keys.Chunk(500))
        {
            var values = await database.StringGetAsync(chunk);
            for (var i = 0; i < chunk.Length; i++)
            {
                var parts = ((string)chunk[i]!).Split(':');
                if (parts.Length != 5 || values[i].IsNull)
                {
                    continue;
                }

                var json = (string)values[i]!;
                var updatedAt = 0L;
                string? status = null;
                try
                {
                    using var document = JsonDocument.Parse(json);
                    status = document.RootElement.TryGetProperty("status", out var s) ? s.GetString() : null;
                    updatedAt = document.RootElement.TryGetProperty("updatedAt", out var u) && u.TryGetInt64(out var ms) ? ms : 0;
                }
                catch (JsonException)
                {
                    status = null;
                }

                records.Add(new WorkRecord(chunk[i]!, parts[2], parts[3], parts[4], status, updatedAt, json));
            }
        }

        return records;
    }

    /// <summary>
    /// For each ID declared dead (the handlers' <c>Marking coordinator as DEAD</c> lines) that is not running now (no
    /// registry score within the stale threshold): no <c>blocking:*</c> key naming it as a whole segment, no registry
    /// entry, no activity record or deadline, no unfinished K10 record keyed to it, no taken list. Allowed: the
    /// escalation record (K8), spawn requests (K9), the epoch key, and its completed K10 records (they are the result).
    /// </summary>
    private async Task CheckDeadStateAsync(IServer server, IDatabase database, List<string> takenLists)
    {
        var deaths = DeathLines();
        var dead = deaths.Select(DeadId).Where(id => id is not null).Select(id => id!).Distinct(StringComparer.Ordinal).ToList();
        var time = (RedisResult[])(await database.ExecuteAsync("TIME"))!;
        var now = ((long)time[0] * 1000) + ((long)time[1] / 1000);
        foreach (var entry in await database.SortedSetRangeByScoreWithScoresAsync("blocking:coordinators", now - _options.StaleThresholdMs))
        {
            _liveAtCapture.Add((string)entry.Element!);
        }

        var checkedCount = 0;
        foreach (var id in dead)
        {
            var score = await database.SortedSetScoreAsync("blocking:coordinators", id);
            if ((score is { } s && now - (long)s <= _options.StaleThresholdMs) || RunningNow(id))
            {
                continue; // running now (restarted under its ID)
            }

            checkedCount++;
            var left = new List<string>();
            await foreach (var key in server.KeysAsync(pattern: $"blocking:*{id}*", pageSize: 1000))
            {
                var name = (string)key!;
                if (name.Split(':').Skip(2).Contains(id, StringComparer.Ordinal))
                {
                    left.Add($"{name} ({await database.KeyTypeAsync(key)})");
                }
            }

            if (score is not null)
            {
                left.Add($"blocking:coordinators member {id} (score {score}, {now - (long)score.Value} ms old)");
            }

            if (await database.KeyExistsAsync($"coordinator:activity:{id}"))
            {
                left.Add($"coordinator:activity:{id}");
            }

            if (await database.SortedSetScoreAsync("coordinator:deadlines", id) is not null)
            {
                left.Add($"coordinator:deadlines member {id}");
            }

            left.AddRange(_records.Where(r => r.Owner == id && r.Status != "completed").Select(r => $"{r.Key} {r.Json}"));
            left.AddRange(takenLists.Where(k => k.EndsWith(":taken:" + id, StringComparison.Ordinal)));
            if (left.Count > 0)
            {
                var death = deaths.Last(d => DeadId(d) == id);
                _report.Violate("no_dead_state_left", id, $"{left.Count} key(s) of a dead coordinator left {Ago(death.Time)} after its death",
                    [death.Evidence, .. left.Take(12)]);
            }
        }

        _report.Figure("coordinators declared dead (distinct IDs)", dead.Count);
        _report.Figure("dead IDs not running at the end (state checked)", checkedCount);
    }

    private static string Ago(DateTimeOffset time) => $"{(DateTimeOffset.UtcNow - time).TotalSeconds:0} s";

    private List<LogLine> DeathLines() =>
        [.. _processes.Where(p => p.Role == "timeout-handler").SelectMany(p => p.Runs).SelectMany(LogFiles.Read)
            .Where(IsDeath).OrderBy(l => l.Time)];

    /// <summary>
    /// A death line: <c>Marking coordinator as DEAD coordinator=…</c>, or the same for a validator once validators are
    /// monitored through keys of their own (<c>Marking validator as DEAD validator=…</c>, any <c>…Id=</c> field).
    /// </summary>
    private static bool IsDeath(LogLine line) =>
        line.Message.StartsWith(DeadLine, StringComparison.Ordinal) ||
        (line.Message.StartsWith("Marking ", StringComparison.Ordinal) && line.Message.Contains(" as DEAD ", StringComparison.Ordinal));

    private static string? DeadId(LogLine line) =>
        line.Field("coordinator") ?? line.Field("validator") ?? line.Field("validatorId") ?? line.Field("coordinatorId");

    /// <summary>
    /// Whether a process that is up now runs <paramref name="id"/>: its log's last start of the ID (a coordinator or a
    /// validator) has no stop or supersession after it. Covers IDs that are not in the heartbeat registry.
    /// </summary>
    private bool RunningNow(string id)
    {
        foreach (var run in _processes.Select(p => p.Current).Where(r => r is not null))
        {
            var lines = LogFiles.Read(run!);
            var started = lines.FindLastIndex(l => (l.Message.StartsWith(StartedLine, StringComparison.Ordinal) && l.Field("coordinator") == id) ||
                                                   (l.Message.StartsWith(ValidatorStartedLine, StringComparison.Ordinal) && l.Field("validatorId") == id));
            if (started >= 0 && !lines.Skip(started + 1).Any(l =>
                    (l.Message.StartsWith(SupersededLine, StringComparison.Ordinal) || l.Message.StartsWith(StoppedLine, StringComparison.Ordinal) ||
                     l.Message.StartsWith("Validator stopped", StringComparison.Ordinal)) &&
                    (l.Field("coordinator") == id || l.Field("validatorId") == id)))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Judges the logs and the ledger (every process has stopped).</summary>
    public void Judge(IReadOnlyList<LedgerEntry> ledger, FaultInjector injector, OwnershipSampler sampler, IReadOnlyList<FaultRecord> faults)
    {
        var logs = Runs.ToDictionary(r => r, LogFiles.Read);
        var all = logs.Values.SelectMany(l => l).ToList();
        JudgeCompletions(ledger, all, logs);
        JudgeOwnership(sampler);
        JudgeDeaths(all, faults);
        JudgeWaits(logs);
        JudgeExits(injector, logs);
        JudgeResumedEscalations(injector, all);
        foreach (var line in injector.NotInjected)
        {
            _report.Violate("faults_injected", "sigkill_timeout-handler_mid_escalation", line);
        }

        if (!faults.Any(f => f.Kind == "redis_restart"))
        {
            _report.Violate("faults_injected", "redis_restart", "the run ended before the redis-server restart was due");
        }
    }

    private void JudgeCompletions(IReadOnlyList<LedgerEntry> ledger, List<LogLine> all, Dictionary<ProcessRun, List<LogLine>> logs)
    {
        var lines = all.Where(l => l.Message.StartsWith(CompleteLine, StringComparison.Ordinal))
            .GroupBy(l => l.Field("workId")!, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.ToList(), StringComparer.Ordinal);
        var completed = _records.Where(r => r.Status == "completed").GroupBy(r => r.WorkId, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.ToList(), StringComparer.Ordinal);
        var accepted = ledger.Where(e => e.Accepted).ToList();
        var uncertain = ledger.Where(e => !e.Accepted).ToList();
        _report.Figure("items enqueued (HTTP 200)", accepted.Count);
        _report.Figure("enqueue requests failed (not in the ledger's count)", uncertain.Count);
        _report.Figure("items completed (distinct workIds with a completion line)", accepted.Count(e => lines.ContainsKey(e.WorkId)));
        _report.Figure("completion lines", lines.Values.Sum(l => l.Count));
        _report.Figure("K10 records completed", completed.Values.Sum(l => l.Count));
        var outcomes = lines.Values.SelectMany(l => l).GroupBy(l => l.Field("outcome") ?? "?").ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        _report.Figure("completion outcomes", string.Join(' ', outcomes.OrderBy(o => o.Key, StringComparer.Ordinal).Select(o => $"{o.Key}={o.Value}")));

        var lostLines = 0;
        var late = 0;
        foreach (var entry in accepted)
        {
            var seen = lines.GetValueOrDefault(entry.WorkId) ?? [];
            var records = completed.GetValueOrDefault(entry.WorkId) ?? [];
            // The records were read at _capturedAt while the system still ran: a line logged after it may belong to a
            // completion the read did not see yet (completed late, after the drain's end) and is not held against it.
            var before = seen.Count(l => l.Time < _capturedAt);
            if (seen.Count == 1 && records.Count == 1)
            {
                continue;
            }

            if (seen.Count == 1 && records.Count == 0 && before == 0)
            {
                late++;
                continue;
            }

            if (seen.Count == 0 && records.Count == 1 && LostWithSigkill(records[0]) is { } killed)
            {
                // Written to Redis, then the process was SIGKILLed before its console logger flushed the line.
                lostLines++;
                _report.Notes.Add($"{entry.WorkId}: completed in Redis by {records[0].Owner}, its line lost with the SIGKILL of {killed}");
                continue;
            }

            var detail = (seen.Count, records.Count) switch
            {
                (0, 0) => "never completed; at the end " + WhereAtTheEnd(entry.WorkId),
                (> 1, _) => $"completed {seen.Count} times (completion lines)",
                (_, > 1) => $"{records.Count} completed K10 records",
                (1, 0) => "a completion line but no completed K10 record",
                _ => $"completed in Redis ({records.Count} record) but no completion line",
            };
            _report.Violate("completed_exactly_once", entry.WorkId, $"{detail}; enqueued to {entry.Swarm} at {entry.EnqueuedAt:HH:mm:ss.fff}",
                Evidence(entry.WorkId, seen, logs));
        }

        _report.Figure("items completed only after the drain ended", late);
        foreach (var (workId, seen) in lines.Where(l => accepted.All(e => e.WorkId != l.Key)))
        {
            var failedEnqueue = uncertain.FirstOrDefault(e => e.WorkId == workId);
            if (failedEnqueue is null || seen.Count > 1)
            {
                _report.Violate("completed_exactly_once", workId,
                    failedEnqueue is null ? "completed but never enqueued by the generator" : $"enqueue failed ({failedEnqueue.HttpStatus}) yet completed {seen.Count} times",
                    seen.Select(l => l.Evidence));
            }
        }

        if (lostLines > 0)
        {
            _report.Figure("completion lines lost with a SIGKILL (record completed)", lostLines);
        }
    }

    /// <summary>Where an item that never completed was when the records were read: queued, held by a record, or nowhere (lost).</summary>
    private string WhereAtTheEnd(string workId)
    {
        var held = _records.Where(r => r.WorkId == workId)
            .Select(r => $"K10 {r.Status} owned by {r.Owner} ({(_liveAtCapture.Contains(r.Owner) ? "running" : "not running")})").ToList();
        if (_whereQueued.TryGetValue(workId, out var queued))
        {
            held.Add(queued + (queued.Contains(":taken:", StringComparison.Ordinal) ? "" : " (waiting for a coordinator: the drain ran out)"));
        }

        return held.Count == 0 ? "nowhere in Redis: lost" : string.Join("; ", held);
    }

    /// <summary>
    /// The run of the completing owner if it was SIGKILLed around the write of the completed record (up to 1 s before it:
    /// the script was already on its way to Redis; up to 3 s after: the console logger had not flushed the line).
    /// </summary>
    private ProcessRun? LostWithSigkill(WorkRecord record)
    {
        var written = DateTimeOffset.FromUnixTimeMilliseconds(record.UpdatedAt);
        return Runs.Where(r => r.Killed && r.StartedAt <= written && r.Faults.Any(f => f.Kind.StartsWith("sigkill", StringComparison.Ordinal)
                                                                                    && f.At >= written.AddSeconds(-1) && f.At <= written.AddSeconds(3)))
            .FirstOrDefault(r => LogFiles.Read(r).Any(l => l.Message.StartsWith(StartedLine + record.Owner + " ", StringComparison.Ordinal)));
    }

    private IEnumerable<string> Evidence(string workId, List<LogLine> seen, Dictionary<ProcessRun, List<LogLine>> logs)
    {
        var mentions = logs.Values.SelectMany(l => l).Where(l => l.Message.Contains(workId, StringComparison.Ordinal)).OrderBy(l => l.Time).ToList();
        var records = _records.Where(r => r.WorkId == workId).Select(r => $"redis {r.Key} = {r.Json}");
        var lines = mentions.Count <= 6 ? mentions : [.. mentions.Take(2), .. mentions.TakeLast(4)];
        return records.Concat(seen.Select(l => l.Evidence)).Concat(lines.Except(seen).Select(l => l.Evidence)).Distinct();
    }

    private void JudgeOwnership(OwnershipSampler sampler)
    {
        _report.Figure("ownership samples (every ~200 ms)", sampler.Samples);
        _report.Figure("ownership samples failed (Redis restarting)", sampler.SamplesFailed);
        _report.Figure("work IDs seen under two K10 keys in a scan (nominated)", sampler.Nominated);
        _report.Figure("owned twice, one owner silent (not a violation)", sampler.OwnedTwiceWithSilentOwner.Count);
        foreach (var violation in sampler.Violations)
        {
            _report.Violate("no_double_ownership", violation.WorkId,
                $"owned by two live coordinators at {violation.At:HH:mm:ss.fff} (seen in {violation.Samples} sample(s))", violation.Records);
        }
    }

    /// <summary>
    /// Every death must be of a coordinator whose instance was faulted: its process SIGKILLed, or SIGSTOPped around the
    /// time of the death, or exited, or the instance stopped. A process hosting coordinators (replacements) faults all
    /// of them; the hosted IDs come from its <c>Coordinator started coordinator=</c> lines.
    /// </summary>
    private void JudgeDeaths(List<LogLine> all, IReadOnlyList<FaultRecord> faults)
    {
        var deaths = all.Where(IsDeath).OrderBy(l => l.Time).ToList();
        // A validator is a protocol participant started like a coordinator; its own start line counts too.
        var starts = all.Where(l => l.Message.StartsWith(StartedLine, StringComparison.Ordinal) || l.Message.StartsWith(ValidatorStartedLine, StringComparison.Ordinal))
            .GroupBy(l => l.Field("coordinator") ?? l.Field("validatorId")!, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.OrderBy(l => l.Time).ToList(), StringComparer.Ordinal);
        var redisRestarts = faults.Where(f => f.Kind == "redis_restart").ToList();
        _report.Figure("deaths declared", deaths.Count);
        var explained = new SortedDictionary<string, int>(StringComparer.Ordinal);
        foreach (var death in deaths)
        {
            var id = DeadId(death) ?? "?";
            var at = death.Time;
            // The death fenced the instance whose epoch is below the epoch it set (fencedAtEpoch): an instance that
            // started later has a higher epoch and is not the one declared dead, even if its start was logged first.
            var fence = long.TryParse(death.Field("fencedAtEpoch"), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var f) ? f : (long?)null;
            // With a fence known, only start lines that carry an epoch count: a validator's own start line has none, and
            // a process restarted just before the death logs it within the time window below although its instance
            // (epoch above the fence) is not the one declared dead (every validator also logs its epoch-bearing start).
            var instances = (starts.GetValueOrDefault(id) ?? []).Where(s =>
                fence is { } fenced
                    ? long.TryParse(s.Field("epoch"), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var epoch) && epoch < fenced
                    : s.Time <= at.AddMilliseconds(200)).ToList();
            var evidence = new List<string> { death.Evidence };
            evidence.AddRange(redisRestarts.Where(r => Math.Abs((r.At - at).TotalSeconds) < 15)
                .Select(r => $"redis-server restart at {r.At:HH:mm:ss.fff} (back at {r.Until:HH:mm:ss.fff})"));
            if (instances.Count == 0)
            {
                if (!HostFaulted(all, id, at, evidence))
                {
                    _report.Violate("no_false_death", id, "declared dead but no instance of it was seen starting, nor a faulted host of it", evidence);
                }

                continue;
            }

            var latest = instances[^1];
            var why = FaultedAt(latest, id, at);
            if (why is not null)
            {
                var kind = why.StartsWith("sig", StringComparison.Ordinal) || why == "process exited" ? why : "instance stopped or superseded";
                explained[kind] = explained.GetValueOrDefault(kind) + 1;
                continue;
            }

            evidence.Add("instance: " + latest.Evidence);
            evidence.Add($"its process {latest.Run}: started {latest.Run.StartedAt:HH:mm:ss.fff}, faults: " +
                         (latest.Run.Faults.Count == 0 ? "none" : string.Join("; ", latest.Run.Faults.Select(f => $"{f.Kind} at {f.At:HH:mm:ss.fff}" + (f.Until is { } u ? $"–{u:HH:mm:ss.fff}" : "")))));
            var earlier = instances.Take(instances.Count - 1).Where(i => i.Run.Faults.Count > 0).Select(i => $"earlier instance {i.Run} faulted ({i.Run.Faults[0].Kind} at {i.Run.Faults[0].At:HH:mm:ss.fff})");
            evidence.AddRange(earlier);
            evidence.AddRange(LogFiles.Read(latest.Run).Where(l => l.Time >= at.AddSeconds(-4) && l.Time <= at.AddSeconds(2) && l.Level is "WARN" or "ERROR").Take(4).Select(l => l.Evidence));
            var sinceStart = (at - latest.Time).TotalMilliseconds;
            _report.Violate("no_false_death", id, $"declared dead while its instance in {latest.Run} was not faulted (instance started {sinceStart:0} ms before the death)", evidence);
        }

        _report.Figure("deaths explained by a fault", string.Join(' ', explained.Select(e => $"{e.Key}={e.Value}")));
        var handlerIds = all.Where(l => l.Message.StartsWith("Timeout handler started handler=", StringComparison.Ordinal))
            .GroupBy(l => l.Field("handler")!, StringComparer.Ordinal)
            .Where(g => g.Select(l => l.Run.Name).Distinct(StringComparer.Ordinal).Count() > 1)
            .Select(g => $"{g.Key} (used by {string.Join(", ", g.Select(l => l.Run.Name).Distinct(StringComparer.Ordinal))})");
        foreach (var shared in handlerIds)
        {
            _report.Notes.Add($"two timeout-handler processes share one handler ID: {shared}; the ID is timeout-handler-{{machine name}}, so a lease or a `monitor=` field cannot tell them apart");
        }
    }

    /// <summary>Why the instance could be declared dead at <paramref name="at"/>, or null when nothing explains it.</summary>
    private static string? FaultedAt(LogLine instance, string id, DateTimeOffset at)
    {
        var run = instance.Run;
        foreach (var fault in run.Faults)
        {
            if (fault.Kind.StartsWith("sigkill", StringComparison.Ordinal) && fault.At <= at)
            {
                return fault.Kind;
            }

            if (fault.Kind.StartsWith("sigstop", StringComparison.Ordinal) && fault.At <= at && (fault.Until ?? DateTimeOffset.MaxValue) >= at.AddMilliseconds(-1500))
            {
                return fault.Kind;
            }
        }

        if (run.ExitedAt is { } exited && exited <= at.AddMilliseconds(100))
        {
            return "process exited";
        }

        var stopped = LogFiles.Read(run).FirstOrDefault(l => l.Time >= instance.Time && l.Time <= at &&
            (l.Message.StartsWith(SupersededLine + id + " ", StringComparison.Ordinal) ||
             (l.Message.StartsWith(StoppedLine, StringComparison.Ordinal) && l.Field("coordinator") == id)));
        return stopped?.Message;
    }

    /// <summary>A replacement whose start line is missing: its host (from the manager's claim line) was faulted before the death.</summary>
    private bool HostFaulted(List<LogLine> all, string id, DateTimeOffset at, List<string> evidence)
    {
        var claims = all.Where(l => l.Message.StartsWith("Spawn request claimed newCoordinatorId=" + id + " ", StringComparison.Ordinal)).ToList();
        foreach (var claim in claims)
        {
            evidence.Add(claim.Evidence);
            var host = _processes.FirstOrDefault(p => p.Name == claim.Field("host"));
            var run = host?.Runs.LastOrDefault(r => r.StartedAt <= claim.Time);
            if (run is not null && (run.Faults.Any(f => f.At <= at) || run.ExitedAt <= at))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Every ACK wait (<c>Waiting for ACKs</c> … <c>ACK wait complete … status=</c>) in the runs that were not SIGKILLed
    /// ended <c>completed</c>, <c>timeout</c> with its reason (the <c>ACK wait timeout … missing=</c> line) or
    /// <c>peer_dead</c> with its reason (a line naming the dead peer for that wait). A <c>cancelled</c> wait is accepted
    /// only when its coordinator was superseded (it was declared dead: the death check judges that) or the runner's
    /// final graceful stop had begun. A wait with no end in a run that stopped gracefully never ended.
    /// </summary>
    private void JudgeWaits(Dictionary<ProcessRun, List<LogLine>> logs)
    {
        var started = 0;
        var ends = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var exempt = 0;
        foreach (var (run, lines) in logs.Where(l => !l.Key.Killed && l.Key.Role is "coordinator" or "validator"))
        {
            var open = new Dictionary<string, Queue<LogLine>>(StringComparer.Ordinal);
            var timeouts = new HashSet<string>(StringComparer.Ordinal);
            var superseded = lines.Where(l => l.Message.StartsWith(SupersededLine, StringComparison.Ordinal) || l.Message.Contains("of this process was superseded", StringComparison.Ordinal)).ToList();
            foreach (var line in lines)
            {
                if (line.Message.StartsWith(WaitStartLine, StringComparison.Ordinal))
                {
                    started++;
                    var label = line.Field("signalId")!;
                    (open.TryGetValue(label, out var q) ? q : open[label] = new Queue<LogLine>()).Enqueue(line);
                }
                else if (line.Message.StartsWith(WaitTimeoutLine, StringComparison.Ordinal))
                {
                    timeouts.Add(line.Field("signalId")!);
                }
                else if (line.Message.StartsWith(WaitEndLine, StringComparison.Ordinal))
                {
                    var label = line.Field("signalId")!;
                    var status = line.Field("status") ?? "?";
                    ends[status] = ends.GetValueOrDefault(status) + 1;
                    var start = open.TryGetValue(label, out var q) && q.Count > 0 ? q.Dequeue() : null;
                    var waiter = label.Split(',')[0].Split(':')[0];
                    switch (status)
                    {
                        case "completed":
                            break;
                        case "timeout" when timeouts.Contains(label):
                            break;
                        case "peer_dead" when lines.Any(l => l != line && l.Message.Contains(label, StringComparison.Ordinal) && l.Message.Contains("dead", StringComparison.OrdinalIgnoreCase))
                                              || line.Message.Contains("dead=", StringComparison.Ordinal) || line.Message.Contains("deadPeers=", StringComparison.Ordinal):
                            break;
                        case "cancelled" when (run.FinalStopAt is { } stop && line.Time >= stop.AddMilliseconds(-100))
                                              || superseded.Any(s => s.Time <= line.Time.AddSeconds(2) && (s.Field("coordinator") == waiter || s.Message.Contains("of this process was superseded", StringComparison.Ordinal))):
                            exempt++;
                            break;
                        default:
                            _report.Violate("waits_end_with_reason", $"{waiter} wait {Short(label)}",
                                $"ended status={status}" + (status is "timeout" or "peer_dead" ? " without its reason line" : ""),
                                [.. (start is null ? Array.Empty<string>() : [start.Evidence]), line.Evidence]);
                            break;
                    }
                }
            }

            // A run that exited 3 (superseded after a SIGSTOP) or crashed is judged by the death and exit checks instead.
            var graceful = run.FinalStopAt is not null && run.ExitCode is not 137;
            if (!graceful)
            {
                continue;
            }

            foreach (var start in open.Values.SelectMany(q => q))
            {
                _report.Violate("waits_end_with_reason", $"{start.Field("signalId")!.Split(':')[0]} wait {Short(start.Field("signalId")!)}",
                    $"never ended (started {(run.FinalStopAt!.Value - start.Time).TotalSeconds:0.0} s before the final stop; timeout {start.Field("timeout")} ms)",
                    [start.Evidence]);
            }
        }

        _report.Figure("waits started (runs not SIGKILLed)", started);
        _report.Figure("waits ended by status", string.Join(' ', ends.Select(e => $"{e.Key}={e.Value}")));
        _report.Figure("waits cancelled by supersession or the final stop (accepted)", exempt);
    }

    /// <summary>
    /// Every escalation cut by a mid-escalation kill was finished by another handler (or the restarted one): a
    /// <c>Resuming escalation coordinator=…</c> line after the kill, and a final K8 record (replaced or failed) at the end.
    /// </summary>
    private void JudgeResumedEscalations(FaultInjector injector, List<LogLine> all)
    {
        foreach (var (deadId, at, stepLine) in injector.EscalationKills)
        {
            var resumed = all.Where(l => l.Time >= at && l.Message.StartsWith("Resuming escalation coordinator=" + deadId + " ", StringComparison.Ordinal)).ToList();
            var record = _escalations.GetValueOrDefault(deadId) ?? "no K8 record";
            var status = record.StartsWith('{') ? ReadString(record, "status") : null;
            if (resumed.Count == 0 || status is not ("replaced" or "failed"))
            {
                _report.Violate("escalation_resumed", deadId,
                    resumed.Count == 0 ? "no handler logged `Resuming escalation` after the handler escalating it was SIGKILLed" : $"resumed, but its K8 status is {status ?? "missing"} at the end",
                    [stepLine, $"handler SIGKILLed at {at:HH:mm:ss.fff}", .. resumed.Take(3).Select(l => l.Evidence), $"redis coordinator:escalation:{deadId} = {record}"]);
            }
        }

        _report.Figure("escalations cut by a handler kill / resumed", $"{injector.EscalationKills.Count} / {injector.EscalationKills.Count(k => all.Any(l => l.Time >= k.At && l.Message.StartsWith("Resuming escalation coordinator=" + k.DeadId + " ", StringComparison.Ordinal)))}");
    }

    private static string Short(string label) => label.Length <= 90 ? label : label[..90] + "…";

    private void JudgeExits(FaultInjector injector, Dictionary<ProcessRun, List<LogLine>> logs)
    {
        var exits = injector.UnexpectedExits.ToList();
        _report.Figure("exits with code 3 (superseded instance restarts)", exits.Count(r => r.ExitCode == 3));
        _report.Figure("process runs", logs.Count);
        foreach (var run in exits.Where(r => r.ExitCode != 3))
        {
            // The raw tail: an unhandled exception reaches stderr without the log line's timestamp.
            var tail = File.Exists(run.LogPath)
                ? File.ReadLines(run.LogPath).Where(l => !l.Contains("connection restored", StringComparison.Ordinal)).TakeLast(8)
                    .Select(l => $"{Path.GetFileName(run.LogPath)}: {(l.Length > 300 ? l[..300] : l)}")
                : [];
            _report.Violate("no_crash", run.ToString(), $"exited with code {run.ExitCode} without being asked to", tail.ToList());
        }

        foreach (var run in exits.Where(r => r.ExitCode == 3 && r.Faults.Count == 0))
        {
            _report.Notes.Add($"{run} exited superseded without a fault of its own (see no_false_death)");
        }
    }

    private static string? ReadString(string json, string property)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
