using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Logging;

namespace Cfn.Coordination.Tests;

/// <summary>
/// A coordinator learns it was superseded on one thread (its heartbeat) while another (its work loop) has a write
/// refused by the fence. The second must see "superseded" as soon as the first has recorded it, not once the first has
/// finished logging and cancelling: in a chaos run the loop, told `fenced` inside that window, took its item for
/// recorded and dropped it instead of giving it back to the queue.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class CoordinatorSupersededTests(RedisServer server)
{
    [Fact]
    public async Task IsSuperseded_TrueWhileTheFirstDiscovererIsStillLogging()
    {
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        using var loggers = LoggerFactory.Create(b => b.AddProvider(new BlockingProvider("Coordinator superseded", entered, release)));
        var redis = new RedisContext(server.Multiplexer, new CoordinationOptions(), loggerFactory: loggers);
        await using var coordinator = await Coordinator.StartAsync(redis, new SigningKeys(Harness.Secret), TestIds.New("coord"), "swarm-test",
            new Cfn.Coordination.Metrics.CoordinationMetrics(Prometheus.Metrics.NewCustomRegistry()), runHeartbeatLoop: false);

        var first = Task.Run(() => coordinator.MarkSuperseded("heartbeat", "9"));
        Assert.True(entered.Wait(TimeSpan.FromSeconds(10)), "the supersession was never logged");

        // The first discoverer is inside its log call: the token is not cancelled yet, but the instance is superseded.
        Assert.False(coordinator.SupersededToken.IsCancellationRequested);
        Assert.True(coordinator.IsSuperseded);

        release.Set();
        await first;
        Assert.True(coordinator.SupersededToken.IsCancellationRequested);
    }

    /// <summary>Holds the thread that logs a message containing <paramref name="text"/> until <paramref name="release"/>.</summary>
    private sealed class BlockingProvider(string text, ManualResetEventSlim entered, ManualResetEventSlim release) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new Blocking(text, entered, release);

        public void Dispose()
        {
        }

        private sealed class Blocking(string text, ManualResetEventSlim entered, ManualResetEventSlim release) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (formatter(state, exception).Contains(text, StringComparison.Ordinal))
                {
                    entered.Set();
                    release.Wait(TimeSpan.FromSeconds(30));
                }
            }
        }
    }
}
