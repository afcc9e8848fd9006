using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Cfn.Coordination;
using Cfn.Coordination.Background;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Prometheus;

namespace Cfn.Agents;

/// <summary>
/// One HTTP agent session (SPEC D21): an agent instance this process keeps alive for an agent that only speaks HTTP. Its
/// heartbeat runs while the agent keeps calling within its lease; a request in flight (a long-poll) keeps it alive too.
/// The token is kept only as its SHA-256, compared in constant time.
/// </summary>
internal sealed class AgentSession(string sessionId, Coordinator agent, byte[] tokenHash, TimeSpan lease, long createdAtMs)
{
    private long _lastSeenMs = createdAtMs;
    private int _inFlight;

    public string SessionId { get; } = sessionId;

    public Coordinator Agent { get; } = agent;

    public TimeSpan Lease { get; } = lease;

    public long CreatedAtMs { get; } = createdAtMs;

    public long LastSeenMs => Interlocked.Read(ref _lastSeenMs);

    /// <summary>One receive at a time: two concurrent long-polls would race for the same inbox entry.</summary>
    public SemaphoreSlim Receiving { get; } = new(1, 1);

    /// <summary>True when <paramref name="token"/> is this session's.</summary>
    public bool Accepts(string token) => CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(token)), tokenHash);

    /// <summary>A request of the agent starts: the session is alive until it ends, however long it takes.</summary>
    public void Enter(long nowMs)
    {
        Interlocked.Increment(ref _inFlight);
        Interlocked.Exchange(ref _lastSeenMs, nowMs);
    }

    /// <summary>A request of the agent ended: the lease counts from now.</summary>
    public void Leave(long nowMs)
    {
        Interlocked.Exchange(ref _lastSeenMs, nowMs);
        Interlocked.Decrement(ref _inFlight);
    }

    /// <summary>No request in flight and none for longer than the lease.</summary>
    public bool Lapsed(long nowMs) => Volatile.Read(ref _inFlight) == 0 && nowMs - LastSeenMs > Lease.TotalMilliseconds;
}

/// <summary>Settings of the HTTP agent sessions (docs/configuration.md).</summary>
internal sealed record AgentSessionOptions
{
    /// <summary>Lease when a session does not ask for one.</summary>
    public static readonly TimeSpan DefaultLease = TimeSpan.FromSeconds(30);

    /// <summary>Shortest lease: below a heartbeat or two, a slow network would kill sessions.</summary>
    public static readonly TimeSpan MinLease = TimeSpan.FromSeconds(1);

    /// <summary>Longest lease: a dead agent must not hold its ID for longer.</summary>
    public static readonly TimeSpan MaxLease = TimeSpan.FromMinutes(10);

    /// <summary><c>CFN_AGENT_TOKEN</c>: a bearer token that may create sessions without admin rights (null: admin only).</summary>
    public string? Token { get; init; }

    /// <summary><c>CFN_AGENT_SESSIONS_MAX</c>: sessions one process keeps at most.</summary>
    public int MaxSessions { get; init; } = 1000;
}

/// <summary>
/// The HTTP agent sessions of this process: created by <c>POST /api/agents/sessions</c>, each an agent instance started
/// with <see cref="Coordinator.StartAgentAsync"/> (kind <c>http</c>). A watchdog ends every session whose agent stopped
/// calling for its lease by abandoning its instance, as a crash would: the timeout handler then declares the agent dead
/// and recovers it like any agent (its waiters get <c>peer_dead</c>, its work goes back to the queue). A graceful stop
/// of the process closes the sessions gracefully.
/// </summary>
internal sealed class AgentSessions : IAsyncDisposable
{
    private static readonly Gauge Open = Metrics.CreateGauge("agent_sessions", "HTTP agent sessions open in this process (SPEC D21).");
    private static readonly Counter Ended = Metrics.CreateCounter("agent_sessions_ended_total", "HTTP agent sessions ended, by how (closed, lapsed, superseded).",
        new CounterConfiguration { LabelNames = ["reason"] });

    private readonly ConcurrentDictionary<string, AgentSession> _sessions = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, string> _byAgent = new(StringComparer.Ordinal);
    private readonly RedisContext _redis;
    private readonly SigningKeys _keys;
    private readonly CoordinationMetrics _metrics;
    private readonly LoopHealth _loops;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private Task _watchdog = Task.CompletedTask;

    public AgentSessions(RedisContext redis, SigningKeys keys, CoordinationMetrics metrics, LoopHealth loops, AgentSessionOptions options, ILogger logger)
    {
        _redis = redis;
        _keys = keys;
        _metrics = metrics;
        _loops = loops;
        Options = options;
        _logger = logger;
    }

    public AgentSessionOptions Options { get; }

    public TimeProvider Time => _redis.Time;

    public int Count => _sessions.Count;

    /// <summary>Starts the lease watchdog (a loop of <c>/health/ready</c>).</summary>
    public void Start()
    {
        var handle = _loops.Register("agent_sessions", null, TimeSpan.FromMilliseconds(250));
        _watchdog = Task.Run(() => WatchAsync(handle, _stopping.Token));
    }

    /// <summary>
    /// Starts a session for <paramref name="agentId"/>: a new epoch for the ID (an earlier instance anywhere, an earlier
    /// session here included, is fenced from now on). Returns the session and its token, which is shown only now.
    /// </summary>
    public async Task<(AgentSession Session, string Token)> CreateAsync(string agentId, string swarmId, TimeSpan lease)
    {
        if (_sessions.Count >= Options.MaxSessions)
        {
            throw new AgentSessionLimitException(Options.MaxSessions);
        }

        var agent = await Coordinator.StartAgentAsync(_redis, _keys, agentId, swarmId, AgentKind.Http, _metrics).ConfigureAwait(false);
        var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        var session = new AgentSession("s-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12)), agent,
            SHA256.HashData(Encoding.UTF8.GetBytes(token)), lease, Time.GetUtcNow().ToUnixTimeMilliseconds());
        _sessions[session.SessionId] = session;
        if (_byAgent.TryGetValue(agentId, out var previousId) && _sessions.TryRemove(previousId, out var previous))
        {
            // Fenced by the new epoch: it stops without removing anything, the keys are the new instance's now.
            await previous.Agent.AbandonAsync().ConfigureAwait(false);
            Ended.WithLabels("superseded").Inc();
        }

        _byAgent[agentId] = session.SessionId;
        Open.Set(_sessions.Count);
        _logger.LogInformation("Agent session created sessionId={SessionId} agent={AgentId} swarm={SwarmId} epoch={Epoch} leaseMs={LeaseMs}",
            session.SessionId, agentId, swarmId, agent.Epoch, (long)lease.TotalMilliseconds);
        return (session, token);
    }

    /// <summary>The session <paramref name="sessionId"/>, or null when there is none (never created, closed or lapsed).</summary>
    public AgentSession? Find(string sessionId) => _sessions.GetValueOrDefault(sessionId);

    /// <summary>Closes a session on the agent's request: a graceful stop of its instance (unconsumed signals stay in its inbox).</summary>
    public async Task CloseAsync(AgentSession session)
    {
        if (Remove(session))
        {
            await session.Agent.StopAsync().ConfigureAwait(false);
            Ended.WithLabels("closed").Inc();
            _logger.LogInformation("Agent session closed sessionId={SessionId} agent={AgentId}", session.SessionId, session.Agent.Id);
        }
    }

    /// <summary>A session whose instance was superseded (its ID started again elsewhere) is dropped: its writes are refused anyway.</summary>
    public async Task DropSupersededAsync(AgentSession session)
    {
        if (Remove(session))
        {
            await session.Agent.AbandonAsync().ConfigureAwait(false);
            Ended.WithLabels("superseded").Inc();
            _logger.LogWarning("Agent session superseded sessionId={SessionId} agent={AgentId}: its ID runs under a newer epoch", session.SessionId, session.Agent.Id);
        }
    }

    private bool Remove(AgentSession session)
    {
        if (!_sessions.TryRemove(session.SessionId, out _))
        {
            return false;
        }

        _byAgent.TryRemove(new KeyValuePair<string, string>(session.Agent.Id, session.SessionId));
        Open.Set(_sessions.Count);
        return true;
    }

    private async Task WatchAsync(LoopHandle handle, CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(250), Time);
        using (handle)
        {
            try
            {
                while (await timer.WaitForNextTickAsync(stopping).ConfigureAwait(false))
                {
                    try
                    {
                        await LapseAsync().ConfigureAwait(false);
                        handle.PassCompleted();
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        handle.PassFailed(e, _logger);
                    }
                }
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                // stopping
            }
        }
    }

    /// <summary>Ends every session whose agent stopped calling: like a crash, so the agent is recovered as a dead one.</summary>
    private async Task LapseAsync()
    {
        var now = Time.GetUtcNow().ToUnixTimeMilliseconds();
        foreach (var session in _sessions.Values)
        {
            if (session.Agent.IsSuperseded)
            {
                await DropSupersededAsync(session).ConfigureAwait(false);
            }
            else if (session.Lapsed(now) && Remove(session))
            {
                await session.Agent.AbandonAsync().ConfigureAwait(false);
                Ended.WithLabels("lapsed").Inc();
                _logger.LogWarning(
                    "Agent session lapsed sessionId={SessionId} agent={AgentId} silentMs={SilentMs} leaseMs={LeaseMs}: heartbeat stopped, the agent is left for recovery",
                    session.SessionId, session.Agent.Id, now - session.LastSeenMs, (long)session.Lease.TotalMilliseconds);
            }
        }
    }

    /// <summary>The process stops: the watchdog ends and every session closes gracefully.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _watchdog.ConfigureAwait(false);
        foreach (var session in _sessions.Values.ToList())
        {
            await CloseAsync(session).ConfigureAwait(false);
        }

        _stopping.Dispose();
    }
}

/// <summary>This process already keeps <see cref="AgentSessionOptions.MaxSessions"/> sessions.</summary>
internal sealed class AgentSessionLimitException(int max)
    : Exception($"This process keeps at most {max} agent sessions (CFN_AGENT_SESSIONS_MAX)");
