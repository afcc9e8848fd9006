using Cfn.Coordination.Background;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Swarms;
using Cfn.Coordination.Wakeups;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

// An entry point of the library: public at the namespace root (SPEC D22), its machinery stays in Swarms.
namespace Cfn.Coordination;

/// <summary>
/// Starts a coordinator and returns its running instance; disposing that instance is a graceful stop (the
/// coordinator deletes its keys). The executable passes one that starts a <see cref="Coordinator"/> and its work loop.
/// </summary>
public delegate Task<IAsyncDisposable> CoordinatorFactory(string coordinatorId, string swarmId, CancellationToken cancellationToken);

/// <summary>
/// A process that runs coordinators for the swarm manager. It keeps its record (<see cref="HostRecord"/>) in Redis and
/// takes commands from its list (<see cref="Keys.HostCommands"/>), woken by pub/sub on <see cref="Keys.HostChannel"/>
/// with a slow fallback check every <see cref="SwarmManagerOptions.HostReportInterval"/> (no hot polling).
/// <c>start</c> runs the <see cref="CoordinatorFactory"/> (a failure fails the spawn request with its error);
/// <c>stop</c> disposes the coordinator gracefully.
/// </summary>
public sealed class CoordinatorHost : IAsyncDisposable
{
    private readonly RedisContext _redis;
    private readonly CoordinatorFactory _factory;
    private readonly SwarmManagerOptions _options;
    private readonly SpawnRequests _spawns;
    private readonly ILogger _logger;
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly HashSet<Task> _work = [];
    private readonly SemaphoreSlim _reportLock = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private readonly Action<RedisChannel, RedisValue> _onWake;
    private readonly BackgroundLoop _loop;
    private int _disposed;

    /// <summary>Creates a host; <see cref="StartAsync"/> registers it.</summary>
    /// <exception cref="InvalidIdException"><paramref name="hostId"/> is invalid.</exception>
    public CoordinatorHost(RedisContext redis, string hostId, CoordinatorFactory factory, SwarmManagerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(redis);
        ArgumentNullException.ThrowIfNull(factory);
        _redis = redis;
        HostId = Ids.RequireName(hostId, "hostId");
        _factory = factory;
        _options = options ?? new SwarmManagerOptions();
        _options.Validate();
        _spawns = new SpawnRequests(redis.Database, redis.Time, _options.SpawnTtlSeconds);
        _logger = redis.LoggerFactory.CreateLogger<CoordinatorHost>();
        _onWake = (_, _) => _loop!.Wake();
        _loop = new BackgroundLoop(redis.Loops, LoopNames.CoordinatorHost, HostId, _options.HostReportInterval, PassAsync, _logger, redis.Time)
        {
            // StartAsync has just written the record: the first pass only reads the commands.
            Schedule = LoopSchedule.AfterPass,
            PassAtStart = true,
        };
    }

    /// <summary>This host's ID.</summary>
    public string HostId { get; }

    /// <summary>How many coordinators it may run (<c>COORDINATOR_HOST_CAPACITY</c>).</summary>
    public int Capacity => _options.HostCapacity;

    /// <summary>The coordinators it runs or is starting.</summary>
    public IReadOnlyList<HostedCoordinator> Running
    {
        get
        {
            lock (_entries)
            {
                return _entries.Values.Select(e => e.ToRecord()).ToList();
            }
        }
    }

    /// <summary>Subscribes to its channel, writes its record and starts taking commands.</summary>
    public async Task StartAsync()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) == 1, this);
        await Subscriptions.SubscribeAsync(_redis.Multiplexer.GetSubscriber(), Keys.HostChannel(HostId), _onWake, _logger).ConfigureAwait(false);
        try
        {
            await ReportAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            // The loop's passes report again; a Redis restart during the start must not fail the process.
            _logger.LogWarning("Coordinator host could not report at start host={HostId}: {Error}", HostId, RedisErrors.FirstClause(e));
        }

        _loop.Start();
        _logger.LogInformation("Coordinator host started host={HostId} capacity={Capacity}", HostId, Capacity);
    }

    /// <summary>
    /// Adds a coordinator this process started itself (e.g. the <c>COORDINATOR_ID</c> of a StatefulSet pod), so it counts
    /// toward the host's load and a scale-down can stop it; the host disposes it on a <c>stop</c> command or at its own end.
    /// </summary>
    public async Task RegisterRunningAsync(string coordinatorId, string swarmId, IAsyncDisposable runtime)
    {
        Ids.RequireName(coordinatorId, "coordinatorId");
        Ids.RequireName(swarmId, "swarmId");
        ArgumentNullException.ThrowIfNull(runtime);
        lock (_entries)
        {
            if (!_entries.TryAdd(coordinatorId, new Entry(coordinatorId, swarmId, Now(), Spawned: false) { Runtime = runtime }))
            {
                throw new InvalidOperationException($"coordinator {coordinatorId} already runs on host {HostId}");
            }
        }

        await ReportAsync().ConfigureAwait(false);
        _logger.LogInformation("Coordinator registered on host host={HostId} coordinator={CoordinatorId} swarm={SwarmId}", HostId, coordinatorId, swarmId);
    }

    /// <summary>Stops one of its coordinators gracefully now (as a <c>stop</c> command would), e.g. one that was superseded.</summary>
    public Task StopAsync(string coordinatorId)
    {
        Ids.RequireName(coordinatorId, "coordinatorId");
        return StopCoordinatorAsync(coordinatorId);
    }

    /// <summary>Takes every queued command now (the loop does this on each wake-up).</summary>
    public async Task DrainCommandsAsync()
    {
        var database = _redis.Database;
        while (!_stopping.IsCancellationRequested)
        {
            var raw = (string?)await database.ListLeftPopAsync(Keys.HostCommands(HostId)).ConfigureAwait(false);
            if (raw is null)
            {
                return;
            }

            if (!Json.TryDeserialize<HostCommand>(raw, out var command, out var error) || !Ids.IsValidName(command!.CoordinatorId))
            {
                _logger.LogWarning("Host command ignored host={HostId}: {Error} command={Command}", HostId, error ?? "invalid coordinatorId", raw);
                continue;
            }

            switch (command.Type)
            {
                case HostCommand.Start when Ids.IsValidName(command.SwarmId):
                    Track(StartCoordinatorAsync(command.CoordinatorId, command.SwarmId!));
                    break;
                case HostCommand.Stop:
                    Track(StopCoordinatorAsync(command.CoordinatorId));
                    break;
                default:
                    _logger.LogWarning("Host command ignored host={HostId}: unknown type or invalid swarmId command={Command}", HostId, raw);
                    break;
            }
        }
    }

    /// <summary>Writes this host's record now (it is also refreshed every report interval and after each change).</summary>
    public async Task ReportAsync()
    {
        await _reportLock.WaitAsync().ConfigureAwait(false);
        try
        {
            var database = _redis.Database;
            var now = await RedisTime.NowMsAsync(database).ConfigureAwait(false);
            var record = new HostRecord { HostId = HostId, Capacity = Capacity, Running = Running, UpdatedAt = now };
            var transaction = database.CreateTransaction();
            _ = transaction.StringSetAsync(Keys.Host(HostId), Json.Serialize(record), 3 * _options.HostReportInterval);
            _ = transaction.SortedSetAddAsync(Keys.Hosts, HostId, now);
            await transaction.ExecuteAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            // The next report (or change) writes it again; the managers see a stale host meanwhile.
            _logger.LogWarning("Host record not written host={HostId}: {Error}", HostId, RedisErrors.FirstClause(e));
        }
        finally
        {
            _reportLock.Release();
        }
    }

    /// <summary>On a wake-up the pass reads the commands; when the report interval passed it also rewrites the record.</summary>
    private async Task PassAsync(LoopPass pass)
    {
        if (!pass.Woken)
        {
            await ReportAsync().ConfigureAwait(false);
        }

        try
        {
            await DrainCommandsAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            _logger.LogWarning("Host commands not read host={HostId}: {Error}", HostId, RedisErrors.FirstClause(e));
        }
    }

    private async Task StartCoordinatorAsync(string coordinatorId, string swarmId)
    {
        lock (_entries)
        {
            if (!_entries.TryAdd(coordinatorId, new Entry(coordinatorId, swarmId, Now(), Spawned: true)))
            {
                _logger.LogWarning("Start ignored: coordinator={CoordinatorId} already runs on host={HostId}", coordinatorId, HostId);
                return;
            }
        }

        // Recorded as starting before the factory runs, so the managers never see it neither in flight nor running.
        await ReportAsync().ConfigureAwait(false);
        IAsyncDisposable runtime;
        try
        {
            runtime = await _factory(coordinatorId, swarmId, _stopping.Token).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // any factory failure fails the spawn request, whatever it is
        catch (Exception e)
#pragma warning restore CA1031
        {
            lock (_entries)
            {
                _entries.Remove(coordinatorId);
            }

            await ReportAsync().ConfigureAwait(false);
            await FailRequestAsync(coordinatorId, e.GetType().Name + ": " + e.Message).ConfigureAwait(false);
            return;
        }

        bool stopNow;
        lock (_entries)
        {
            var entry = _entries[coordinatorId];
            entry.Runtime = runtime;
            stopNow = entry.StopRequested;
        }

        _logger.LogInformation("Coordinator started on host host={HostId} coordinator={CoordinatorId} swarm={SwarmId}", HostId, coordinatorId, swarmId);
        if (stopNow)
        {
            await StopCoordinatorAsync(coordinatorId).ConfigureAwait(false);
        }
        else
        {
            await ReportAsync().ConfigureAwait(false);
        }
    }

    private async Task StopCoordinatorAsync(string coordinatorId)
    {
        Entry? entry;
        lock (_entries)
        {
            if (!_entries.TryGetValue(coordinatorId, out entry))
            {
                _logger.LogWarning("Stop ignored: coordinator={CoordinatorId} does not run on host={HostId}", coordinatorId, HostId);
                return;
            }

            if (entry.Runtime is null)
            {
                // Still starting: it stops as soon as its factory returns.
                entry.StopRequested = true;
                return;
            }

            _entries.Remove(coordinatorId);
        }

        await DisposeRuntimeAsync(entry).ConfigureAwait(false);
        await ReportAsync().ConfigureAwait(false);
    }

    private async Task DisposeRuntimeAsync(Entry entry)
    {
        try
        {
            await entry.Runtime!.DisposeAsync().ConfigureAwait(false);
            _logger.LogInformation("Coordinator stopped gracefully on host host={HostId} coordinator={CoordinatorId} swarm={SwarmId}",
                HostId, entry.CoordinatorId, entry.SwarmId);
        }
#pragma warning disable CA1031 // one coordinator's failing stop must not keep the others running
        catch (Exception e)
#pragma warning restore CA1031
        {
            _logger.LogWarning("Coordinator stop failed on host host={HostId} coordinator={CoordinatorId}: {Error}", HostId, entry.CoordinatorId, e.Message);
        }
    }

    private async Task FailRequestAsync(string coordinatorId, string error)
    {
        try
        {
            var failed = await _spawns.TryMoveAsync(coordinatorId, SpawnStatus.Spawning, SpawnStatus.Failed, error).ConfigureAwait(false);
            _logger.LogError("Coordinator start failed host={HostId} coordinator={CoordinatorId} requestFailed={Failed}: {Error}",
                HostId, coordinatorId, failed, error);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            _logger.LogError("Coordinator start failed host={HostId} coordinator={CoordinatorId}: {Error}; the request times out instead ({RedisError})",
                HostId, coordinatorId, error, RedisErrors.FirstClause(e));
        }
    }

    private void Track(Task task)
    {
        lock (_work)
        {
            _work.Add(task);
        }

        _ = task.ContinueWith(t =>
        {
            lock (_work)
            {
                _work.Remove(t);
            }
        }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private long Now() => _redis.Time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Stops taking commands, fails the starts still queued, stops every coordinator gracefully and removes the record.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        await _loop.DisposeAsync().ConfigureAwait(false);
        var database = _redis.Database;
        try
        {
            await _redis.Multiplexer.GetSubscriber().UnsubscribeAsync(Keys.HostChannel(HostId), _onWake).ConfigureAwait(false);
            // Queued starts would otherwise wait out the spawn timeout.
            while ((string?)await database.ListLeftPopAsync(Keys.HostCommands(HostId)).ConfigureAwait(false) is { } raw)
            {
                if (Json.TryDeserialize<HostCommand>(raw, out var command, out _) && command!.Type == HostCommand.Start && Ids.IsValidName(command.CoordinatorId))
                {
                    await FailRequestAsync(command.CoordinatorId, $"host {HostId} stopped before starting it").ConfigureAwait(false);
                }
            }
        }
        catch (Exception e) when (RedisErrors.IsTransient(e) || e is ObjectDisposedException)
        {
            _logger.LogWarning("Host stop could not drain its commands host={HostId}: {Error}", HostId, e.Message);
        }

        Task[] work;
        lock (_work)
        {
            work = [.. _work];
        }

        await Task.WhenAll(work).ConfigureAwait(false);
        Entry[] entries;
        lock (_entries)
        {
            entries = [.. _entries.Values.Where(e => e.Runtime is not null)];
            _entries.Clear();
        }

        await Task.WhenAll(entries.Select(DisposeRuntimeAsync)).ConfigureAwait(false);
        try
        {
            await database.KeyDeleteAsync(Keys.Host(HostId)).ConfigureAwait(false);
            await database.SortedSetRemoveAsync(Keys.Hosts, HostId).ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e) || e is ObjectDisposedException)
        {
            _logger.LogWarning("Host record left to expire host={HostId}: {Error}", HostId, e.Message);
        }

        _logger.LogInformation("Coordinator host stopped host={HostId} coordinatorsStopped={Count}", HostId, entries.Length);
        _stopping.Dispose();
        _reportLock.Dispose();
    }

    private sealed record Entry(string CoordinatorId, string SwarmId, long StartedAt, bool Spawned)
    {
        public IAsyncDisposable? Runtime { get; set; }

        public bool StopRequested { get; set; }

        public HostedCoordinator ToRecord() => new()
        {
            CoordinatorId = CoordinatorId,
            SwarmId = SwarmId,
            StartedAt = StartedAt,
            Spawned = Spawned,
            Starting = Runtime is null ? true : null,
        };
    }
}
