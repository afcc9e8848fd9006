using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Cfn.Coordination;
using Cfn.Coordination.Deadlocks;
using Cfn.Coordination.Inspection;
using Cfn.Coordination.Redis;
using StackExchange.Redis;

namespace Cfn.Hosting;

/// <summary>
/// What <c>kill -3</c> prints (D15, SPEC §5 #77/#78/#86): a dump of at most <see cref="MaxLines"/> lines on stdout —
/// the process, its coordinators and their pending waits, and the wait-for graph of every blocking coordinator in Redis —
/// and the process keeps running. The lowercase word "deadlock" appears only when that graph has a cycle, because the
/// runbook's next step is <c>grep -A 50 "deadlock" thread-dump.log</c>.
/// </summary>
internal sealed class DiagnosticDump
{
    public const int MaxLines = 200;

    private const int MaxGraphCoordinators = 500;

    private readonly Func<IReadOnlyCollection<Coordinator>> _coordinators;
    private readonly Func<Coordinator, IEnumerable<string>>? _describe;
    private readonly CoordinationInspector? _inspector;
    private readonly string _roles;
    private readonly DateTimeOffset _startedAt = DateTimeOffset.UtcNow;

    /// <param name="coordinators">The coordinators (and validators) this process runs now.</param>
    /// <param name="redis">Where the wait-for graph is read; null when the process has no Redis.</param>
    /// <param name="roles">The roles this process runs, for the header.</param>
    /// <param name="describe">Extra lines about one coordinator (its work loop), indented by the dump.</param>
    public DiagnosticDump(Func<IReadOnlyCollection<Coordinator>> coordinators, RedisContext? redis, string roles,
        Func<Coordinator, IEnumerable<string>>? describe = null)
    {
        _coordinators = coordinators;
        _inspector = redis is null ? null : new CoordinationInspector(redis);
        _roles = roles;
        _describe = describe;
    }

    /// <summary>Prints a dump on every SIGQUIT instead of letting the runtime end the process.</summary>
    public IDisposable HandleSigQuit(TextWriter output) =>
        PosixSignalRegistration.Create(PosixSignal.SIGQUIT, context =>
        {
            context.Cancel = true;
            // Off the signal thread: reading the graph is a Redis round trip.
            _ = Task.Run(async () =>
            {
                string text;
                try
                {
                    text = await RenderAsync().ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    text = $"=== cfn diagnostic dump failed: {e.GetType().Name}: {e.Message} ===\n";
                }

                lock (output)
                {
                    output.Write(text);
                    output.Flush();
                }
            });
        });

    /// <summary>The dump as text (lines end with a newline), never more than <see cref="MaxLines"/> lines.</summary>
    public async Task<string> RenderAsync()
    {
        var lines = new List<string>();
        var now = DateTimeOffset.UtcNow;
        using var process = Process.GetCurrentProcess();
        ThreadPool.GetAvailableThreads(out var freeWorkers, out var freeIo);
        ThreadPool.GetMaxThreads(out var maxWorkers, out var maxIo);
        lines.Add($"=== cfn diagnostic dump (SIGQUIT) pid={Environment.ProcessId} at={now:yyyy-MM-dd'T'HH:mm:ss.fff'Z'} " +
                  $"uptime={(now - _startedAt).TotalSeconds:F0}s roles={_roles} ===");
        lines.Add($"process: threads={process.Threads.Count} threadpool.threads={ThreadPool.ThreadCount} " +
                  $"threadpool.busyWorkers={maxWorkers - freeWorkers} threadpool.busyIo={maxIo - freeIo} " +
                  $"threadpool.queued={ThreadPool.PendingWorkItemCount} gc.heapMB={GC.GetTotalMemory(false) / (1024 * 1024)} " +
                  $"gc.collections={GC.CollectionCount(0)}/{GC.CollectionCount(1)}/{GC.CollectionCount(2)}");
        lines.Add("managed stacks: not printed in-process; run `dotnet-stack report -p " +
                  Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "` for every thread's stack");

        var coordinators = _coordinators();
        var blocking = 0;
        var validators = coordinators.Count(c => c.IsValidator);
        lines.Add($"coordinators in this process: {coordinators.Count - validators} validators: {validators}");
        foreach (var coordinator in coordinators.OrderBy(c => c.Id, StringComparer.Ordinal))
        {
            var record = CoordinationInspector.CurrentActivity(coordinator);
            lines.Add($"  {coordinator.Id} swarm={coordinator.SwarmId} epoch={coordinator.Epoch} status={coordinator.Status} " +
                      $"phase={coordinator.Phase ?? "none"} iteration={coordinator.Iteration} heartbeat.sequence={coordinator.HeartbeatSequence} " +
                      $"heartbeat.key={coordinator.HeartbeatKey}" +
                      (coordinator.IsSuperseded ? " SUPERSEDED" : ""));
            if (record.Status == "blocking")
            {
                blocking++;
                var since = record.BlockingSince is { } s && s > 0 ? $"{now.ToUnixTimeMilliseconds() - s}ms" : "just now";
                lines.Add($"    pending wait signal={record.WaitingForSignal} waitingFor={record.WaitingFor} for={since} timeoutMs={record.TimeoutMs}");
            }

            if (_describe is not null)
            {
                lines.AddRange(_describe(coordinator).Select(l => "    " + l));
            }
        }

        lines.Add($"blocking in this process: {blocking}");
        await AddGraphAsync(lines).ConfigureAwait(false);

        if (lines.Count > MaxLines - 1)
        {
            var dropped = lines.Count - (MaxLines - 2);
            lines = [.. lines.Take(MaxLines - 2), $"... {dropped} lines left out (limit {MaxLines})"];
        }

        lines.Add($"=== end of dump ({lines.Count + 1} lines) ===");
        return string.Concat(lines.Select(l => l + "\n"));
    }

    /// <summary>The wait-for graph of every blocking coordinator (the read model's blocking activity) and its cycles.</summary>
    private async Task AddGraphAsync(List<string> lines)
    {
        if (_inspector is null)
        {
            lines.Add("wait-for graph: no Redis in this process");
            return;
        }

        try
        {
            var graph = await _inspector.ReadWaitGraphAsync(MaxGraphCoordinators).ConfigureAwait(false);
            lines.Add($"wait-for graph (Redis, blocking coordinators): nodes={graph.NodeCount} edges={graph.EdgeCount}");
            foreach (var wait in graph.Waits.Take(60))
            {
                lines.Add($"  {wait.CoordinatorId} -> {string.Join(", ", wait.WaitingFor)}");
            }

            var cycles = graph.Cycles;
            if (cycles.Count == 0)
            {
                lines.Add("wait-for cycles: none");
            }

            foreach (var cycle in cycles)
            {
                lines.Add($"deadlock detected: {cycle.Describe()}");
            }
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            lines.Add("wait-for graph: Redis unavailable (" + RedisErrors.FirstClause(e) + ")");
        }
    }
}
