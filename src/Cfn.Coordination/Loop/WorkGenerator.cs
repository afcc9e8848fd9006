using Cfn.Coordination.Background;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;
using System.Globalization;
using System.Text.Json;

// An entry point of the library: public at the namespace root (SPEC D22), its machinery stays in Loop.
namespace Cfn.Coordination;

/// <summary>Settings of the <see cref="WorkGenerator"/>.</summary>
public sealed class WorkGeneratorOptions
{
    /// <summary>Each swarm's queue is topped up to this many items (4).</summary>
    public int TargetLength { get; set; } = 4;

    /// <summary>How often the queues are topped up (1 s).</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Number of distinct inputs generated (16): inputs repeat, so with <c>ENABLE_VALIDATION_CACHE=true</c> the cache
    /// has something to hit.
    /// </summary>
    public int DistinctInputs { get; set; } = 16;

    /// <summary>Checks the settings.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range.</exception>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(TargetLength, 1, nameof(TargetLength));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(Interval, TimeSpan.Zero, nameof(Interval));
        ArgumentOutOfRangeException.ThrowIfLessThan(DistinctInputs, 1, nameof(DistinctInputs));
    }
}

/// <summary>
/// Keeps each given swarm's queue topped up to <see cref="WorkGeneratorOptions.TargetLength"/> items, so a swarm
/// started by <c>cfn up</c> works forever and every metric and endpoint shows live data. Inputs are small JSON
/// objects drawn from a fixed set (<c>{"task":"check-7","size":70,"seed":7}</c>).
/// </summary>
public sealed class WorkGenerator
{
    private readonly WorkQueue _queue;
    private readonly IReadOnlyList<string> _swarmIds;
    private readonly WorkGeneratorOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Random _random;
    private readonly Lock _randomGate = new();
    private readonly LoopHealth _loops;
    private long _generated;

    /// <summary>Creates the generator.</summary>
    /// <param name="queue">The work queues.</param>
    /// <param name="swarmIds">The swarms to feed.</param>
    /// <param name="options">Target length, interval, input variety (defaults when null).</param>
    /// <param name="time">Clock of the interval (system clock when null).</param>
    /// <param name="logger">Logger (none when null).</param>
    /// <param name="random">Random source of the inputs (a shared one when null).</param>
    /// <param name="loops">The process's loop registry (readiness, <c>background_loop_*</c>); a detached one when null.</param>
    /// <exception cref="InvalidIdException">A swarm ID is invalid.</exception>
    public WorkGenerator(
        WorkQueue queue,
        IEnumerable<string> swarmIds,
        WorkGeneratorOptions? options = null,
        TimeProvider? time = null,
        ILogger? logger = null,
        Random? random = null,
        LoopHealth? loops = null)
    {
        ArgumentNullException.ThrowIfNull(queue);
        ArgumentNullException.ThrowIfNull(swarmIds);
        _queue = queue;
        _swarmIds = [.. swarmIds.Select(id => Ids.RequireName(id, "swarmIds")).Distinct(StringComparer.Ordinal)];
        _options = options ?? new WorkGeneratorOptions();
        _options.Validate();
        _time = time ?? TimeProvider.System;
        _logger = logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        _random = random ?? Random.Shared;
        _loops = loops ?? LoopHealth.Detached(_time);
    }

    /// <summary>Items queued so far.</summary>
    public long Generated => Interlocked.Read(ref _generated);

    /// <summary>Tops the queues up every <see cref="WorkGeneratorOptions.Interval"/> until cancelled.</summary>
    public Task RunAsync(CancellationToken cancellationToken) =>
        new BackgroundLoop(_loops, LoopNames.WorkGenerator, null, _options.Interval, async _ =>
        {
            try
            {
                await TopUpAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (RedisErrors.IsTransient(e))
            {
                _logger.LogWarning("Redis error while generating work: {Error}", RedisErrors.FirstClause(e));
            }
        }, _logger, _time) { PassAtStart = true }.RunAsync(cancellationToken);

    /// <summary>One pass: every queue below the target gets the missing items; returns how many were queued.</summary>
    public async Task<int> TopUpAsync()
    {
        var added = 0;
        foreach (var swarmId in _swarmIds)
        {
            var length = await _queue.LengthAsync(swarmId).ConfigureAwait(false);
            for (var i = length; i < _options.TargetLength; i++)
            {
                try
                {
                    await _queue.EnqueueAsync(swarmId, null, NextInput()).ConfigureAwait(false);
                }
                catch (WorkQueueFullException)
                {
                    break;
                }

                added++;
                Interlocked.Increment(ref _generated);
            }
        }

        return added;
    }

    private JsonElement NextInput()
    {
        int k;
        lock (_randomGate)
        {
            k = _random.Next(_options.DistinctInputs);
        }

        return JsonSerializer.SerializeToElement(new
        {
            task = string.Create(CultureInfo.InvariantCulture, $"check-{k}"),
            size = k * 10,
            seed = k,
        }, Json.Options);
    }
}
