using System.Globalization;
using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Swarms;

/// <summary>
/// The spawning pause (SPEC §3.1 #2), kept in Redis (<see cref="Keys.SpawningPaused"/> holds the pause time, ms) so a
/// restarted swarm manager stays paused (runbook #13). While paused, pending spawn requests stay pending and scale-ups
/// are refused.
/// </summary>
internal sealed class SpawningControl
{
    private readonly IDatabase _database;
    private readonly ILogger _logger;

    /// <summary>Creates the control on <paramref name="redis"/>.</summary>
    public SpawningControl(RedisContext redis)
    {
        ArgumentNullException.ThrowIfNull(redis);
        _database = redis.Database;
        _logger = redis.LoggerFactory.CreateLogger<SpawningControl>();
    }

    /// <summary>Pauses spawning; returns the pause time (Redis ms). Pausing again keeps the first time.</summary>
    public async Task<long> PauseAsync()
    {
        while (true)
        {
            var now = await RedisTime.NowMsAsync(_database).ConfigureAwait(false);
            if (await _database.StringSetAsync(Keys.SpawningPaused, now, when: When.NotExists).ConfigureAwait(false))
            {
                _logger.LogWarning("Spawning paused pausedAt={PausedAt}; spawn requests stay pending and scale-ups are refused until resumed", now);
                return now;
            }

            // Already paused: report the first pause time (the loop covers a resume in between).
            if (await GetPausedAtAsync().ConfigureAwait(false) is { } pausedAt)
            {
                _logger.LogInformation("Spawning already paused pausedAt={PausedAt}", pausedAt);
                return pausedAt;
            }
        }
    }

    /// <summary>Resumes spawning and wakes the managers; true when it was paused.</summary>
    public async Task<bool> ResumeAsync()
    {
        var wasPaused = await _database.KeyDeleteAsync(Keys.SpawningPaused).ConfigureAwait(false);
        await _database.PublishAsync(Keys.SwarmManagerChannel, "resume").ConfigureAwait(false);
        _logger.LogInformation("Spawning resumed wasPaused={WasPaused}", wasPaused);
        return wasPaused;
    }

    /// <summary>True while paused.</summary>
    public async Task<bool> IsPausedAsync() => await GetPausedAtAsync().ConfigureAwait(false) is not null;

    /// <summary>The pause time (ms), or null when not paused.</summary>
    public async Task<long?> GetPausedAtAsync() =>
        ParsePausedAt(await _database.StringGetAsync(Keys.SpawningPaused).ConfigureAwait(false));

    /// <summary>The flag's value as a time; a value that is not a number still means paused (time 0).</summary>
    internal static long? ParsePausedAt(RedisValue value) =>
        value.IsNull ? null : long.TryParse((string?)value, NumberStyles.None, CultureInfo.InvariantCulture, out var ms) ? ms : 0;
}
