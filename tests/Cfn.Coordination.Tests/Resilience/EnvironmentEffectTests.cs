using System.Collections;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Resilience;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Resilience;

/// <summary>
/// SPEC §3.6 <c>ENABLE_CIRCUIT_BREAKER</c>: the registry built from <see cref="CircuitBreakerOptions.FromEnvironment"/>
/// (as <c>cfn serve</c> builds it) decides whether the Redis breaker of a real <see cref="RedisContext"/> ever opens.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class EnvironmentEffectTests(RedisServer server)
{
    [Theory]
    [InlineData("true", CircuitState.Open)]
    [InlineData("false", CircuitState.Closed)]
    public async Task EnableCircuitBreaker_FiveRedisFailures_OpensOnlyWhenEnabled(string value, CircuitState expected)
    {
        var breakers = new CircuitBreakerRegistry(Prometheus.Metrics.NewCustomRegistry(),
            CircuitBreakerOptions.FromEnvironment(new Hashtable { ["ENABLE_CIRCUIT_BREAKER"] = value }));
        await using var redis = new RedisContext(server.Multiplexer, new CoordinationOptions(), breakers: breakers);

        for (var i = 0; i < 5; i++)
        {
            redis.RedisBreaker.RecordFailure(new TimeoutException("test failure"));
        }

        Assert.Equal(expected, redis.RedisBreaker.State);
        Assert.Equal(expected == CircuitState.Closed, redis.RedisBreaker.TryAcquire(out var lease));
        lease?.Dispose();
    }
}
